"""The app's pages, one module each; each defines PAGE (a components.Page): path, nav name, layout, callbacks."""
