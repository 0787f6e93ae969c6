"""NUL characters in multipart form fields: refused with 422 naming the field, for every route.

``api.limits.RefuseNul`` scans paths, queries and non-multipart bodies (JSON, url-encoded forms)
before any route runs, but leaves multipart bodies alone because uploaded files are binary. Their text
fields (``Form(...)``, the login form) and file names are text that reaches the database, where
PostgreSQL refuses a NUL with an error: this app-wide dependency checks them once the form is parsed.
"""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from models.errors import InvalidInput


async def refuse_nul_in_form(request: Request) -> None:
    """App-wide dependency: :class:`InvalidInput` (422) for a multipart text field or file name with NUL."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return
    try:
        form = await request.form()  # parsed once: the route's own Form(...) parameters reuse it
    except MultiPartException as err:
        raise InvalidInput(f"not a readable multipart form ({err.message})", field="body") from err
    for name, value in form.multi_items():
        if "\x00" in name:
            raise InvalidInput("NUL characters are not accepted in a form field name", field=name.replace("\x00", "?"))
        if isinstance(value, UploadFile):
            if value.filename and "\x00" in value.filename:
                raise InvalidInput("NUL characters are not accepted in a file name", field=name)
        elif "\x00" in value:
            raise InvalidInput("NUL characters are not accepted", field=name)
