"""Turn a cell's raw files (Locust stats, HAProxy log, ...) into numbers. No Docker here."""
