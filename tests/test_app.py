"""The app in-process: create_app() with a fake engine and Flask's test client (no gunicorn, no models).

What needs real servers (workers, Redis, Consul, the gateway) is tested against them elsewhere;
this tier covers admission, the fast path, the not-ready wait and the error mapping.
"""
from __future__ import annotations

import subprocess
import sys


def test_service_and_images_do_not_import_flask() -> None:
    code = ("import sys, ocr_app.service, ocr_app.images, ocr_app.errors; "
            "assert 'flask' not in sys.modules and 'werkzeug' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
