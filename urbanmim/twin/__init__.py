"""The Urban Digital Twin: the city drawn from its own data in the browser, live, with its history.

``layers.py`` declares the layers, ``data.py`` reads them through the service layer, ``live.py``
pushes changes to open pages (SSE), ``api.py`` is the HTTP, ``component.py`` plugs it in.
"""
