"""``alexnet serve``: the HTTP server and its page (``page.html``). The modules, by concern: options,
metrics, batching, uploads, errors (and the schema), routes, app, transport, run (``serve``)."""
