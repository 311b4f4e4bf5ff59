"""Sharing a store: one zip to upload, and open_store on a URL (read-only through fsspec), tested against an HTTP
server this test starts on 127.0.0.1."""
import functools
import http.server
import threading

import numpy as np
import pytest

from nefs import open_store
from nefs.errors import FitnefError
from scripts import export_nefs

from test_weight_space import make_store

pytest.importorskip("aiohttp")


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(base URL, folder): a static HTTP server over ``folder`` on 127.0.0.1, stopped afterwards."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_zip_export_and_url_stores_read_the_same_rows(tmp_path, served, capsys):
    base, www = served
    local = make_store(www / "store", rows=24, seeds=2, chunk=8)
    export_nefs.main(["zip", str(www / "store"), str(www / "store.zip")])
    assert "store.zip" in capsys.readouterr().out
    want = np.asarray(local.params[:])
    for where in (str(www / "store.zip"), f"{base}/store", f"{base}/store/", f"{base}/store.zip"):
        s = open_store(where)
        assert np.array_equal(np.asarray(s.params[:]), want) and s.done.all()
        assert s.labels.tolist() == local.labels.tolist() and s.layout == local.layout
        assert s.reconstruct([0, 5]).shape == (2, 1, 6, 6)
    remote = open_store(f"{base}/store")
    assert remote.path == f"{base}/store"
    with pytest.raises(Exception):   # read-only: nothing can be written through a URL
        remote.group["done"][0] = False


def test_a_url_that_cannot_be_read_is_one_line(served):
    base, _ = served
    for url in (f"{base}/nothing-here", "http://127.0.0.1:9/store"):
        with pytest.raises(FitnefError) as e:
            open_store(url)
        assert "\n" not in str(e.value) and url in str(e.value)
