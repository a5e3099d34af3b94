"""The library's read-only web page: :func:`~detforge.library.web.app.create_library_app`."""
