"""``alexnet serve``: the HTTP server (``app``) and its page (``page.html``)."""
