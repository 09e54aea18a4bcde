"""Systems under test: the SUT protocol and the built-in local Optuna SUT."""
