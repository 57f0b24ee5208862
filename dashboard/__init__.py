"""Dashboard: the Dash app and figure builders over a folder of runs."""
