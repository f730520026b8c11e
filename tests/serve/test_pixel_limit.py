"""No single request can kill a pod: an image larger than the served pixel limit is refused from its header in
well under a second, before any pixel is decoded (a 400 naming its size and the limit), and the largest images
the limit accepts, sent at once to every decode thread of every instance, keep the server's memory within the
stated budget — and within the Deployment's memory limit (deploy/k8s), which is chosen from this budget."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from serving import infer_raw, running_server, tree_rss_mb

from damo_yolo.contract import MAX_PIXELS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
INSTANCES, THREADS = 2, 2  # the repository's default instances; the CPU overlay's limits.cpu
DECODED_BYTES_PER_PIXEL = 3  # BGR
# per concurrent decode: the decoded image plus what decoding and resizing it hold beside it; measured here
# ~1.1x the decoded image, allowed 1.5x
BUDGET_FACTOR = 1.5


def budget_mb(max_pixels: int = MAX_PIXELS) -> float:
    """What the largest accepted images may add to a serving pod, every decode thread of every instance busy."""
    return INSTANCES * THREADS * max_pixels * DECODED_BYTES_PER_PIXEL * BUDGET_FACTOR / 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from damo_yolo.tools.export import export_repository
    repo = export_repository(ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth",
                             tmp_path_factory.mktemp("pixels") / "triton_models")
    with running_server(repo, repo.parent / "server.log", env={"DAMO_CPU_LIMIT": str(THREADS)}) as srv:
        yield srv


def _infer(url: str, data: bytes):
    """One image straight through tritonclient (tests/serving.py's infer_raw), on a connection of its own."""
    import tritonclient.http as httpclient
    client = httpclient.InferenceServerClient(url, network_timeout=300.0)
    try:
        return infer_raw(client, httpclient, [data])
    finally:
        client.close()


def test_an_oversized_image_is_refused_from_its_header(server, sample_images):
    data = cv2.imencode(".png", np.zeros((20000, 20000), np.uint8))[1].tobytes()  # 400 MP in 0.4 MB
    _infer(server.http_url, sample_images[0].read_bytes())  # the client library imported, the model warm
    start = time.perf_counter()
    with pytest.raises(Exception, match=r"image of 20000x20000 pixels \(400 MP\) exceeds the limit of 150 MP"):
        _infer(server.http_url, data)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"
    (boxes, scores, classes), = _infer(server.http_url, sample_images[0].read_bytes())  # still serving
    assert len(boxes) == len(scores) == len(classes)


def test_the_largest_accepted_images_at_once_stay_within_the_budget(server, capsys):
    import yaml
    side = int(MAX_PIXELS ** 0.5)
    rng = np.random.default_rng(0)
    image = np.repeat(rng.integers(0, 255, (side // 8, side // 8, 3), np.uint8), 8, axis=0).repeat(8, axis=1)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    del image
    pid = server.proc.pid
    before = tree_rss_mb(pid)
    peak, done, errors = [before], threading.Event(), []

    def sample():
        while not done.is_set():
            peak.append(tree_rss_mb(pid))
            time.sleep(0.05)

    def send():
        try:
            _infer(server.http_url, data)
        except Exception as exc:  # collected: every request must be answered
            errors.append(exc)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(2):  # every decode thread of every instance busy with one, twice
        senders = [threading.Thread(target=send) for _ in range(INSTANCES * THREADS)]
        [t.start() for t in senders]
        [t.join() for t in senders]
    done.set()
    sampler.join()
    growth = max(peak) - before
    limit = yaml.safe_load((ROOT / "deploy" / "k8s" / "overlays" / "cpu" / "resources.yaml").read_text())
    memory = limit["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    limit_mb = int(memory.rstrip("Gi")) * 1024
    with capsys.disabled():
        print(f"\n{INSTANCES * THREADS} images of {side}x{side} ({side * side / 1e6:.0f} MP, {len(data) / 1e6:.1f} MB) "
              f"at once, twice: server RSS {before:.0f} MB before, peak {max(peak):.0f} MB (+{growth:.0f} MB; budget "
              f"{budget_mb():.0f} MB); the pod's memory limit {limit_mb} MB")
    assert not errors, errors[:2]
    assert growth <= budget_mb(), f"+{growth:.0f} MB over the budget of {budget_mb():.0f} MB"
    assert before + budget_mb() < limit_mb, "the Deployment's memory limit does not hold the budget"
