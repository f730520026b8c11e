"""DamoClient / AsyncDamoClient: detections from a DAMO-YOLO model served by Triton, over HTTP or gRPC.

    from damo_client import DamoClient
    with DamoClient("127.0.0.1:8000") as client:
        for det in client.detect("bus.jpg"):
            print(det.class_name, det.score, det.box)

On first use the client reads the model's metadata and config and checks the contract it relies on
(input IMAGE BYTES; outputs num_detections, boxes, scores, classes), the batch limit and the class names.
Connection failures are retried with jittered exponential backoff (a host name that does not resolve is not),
and so are the answers of a server that is going away — stopping, or its model unloading at shutdown (the model
is unknown or not ready after the client has seen it served) — so a rolling update or a scale-down fails no
request. Other errors the server answers with (a bad image, a bad threshold) are not retried and keep the
server's message.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import numpy as np

from damo_client.errors import (
    ContractError,
    DamoClientError,
    ImageError,
    InferenceError,
    RestrictedAPI,
    ServerUnavailable,
    WrongProtocol,
)
from damo_client.images import ImageInput, is_bgr, to_bytes
from damo_client.results import Detection
from damo_yolo import contract as C

if TYPE_CHECKING:  # tritonclient ships no type information: these names document what flows where
    import tritonclient.grpc
    import tritonclient.grpc.aio
    import tritonclient.http
    import tritonclient.http.aio

    SyncTriton = Union[tritonclient.http.InferenceServerClient, tritonclient.grpc.InferenceServerClient]
    AsyncTriton = Union[tritonclient.http.aio.InferenceServerClient, tritonclient.grpc.aio.InferenceServerClient]
    InferInput = Union[tritonclient.http.InferInput, tritonclient.grpc.InferInput]
    InferRequestedOutput = Union[tritonclient.http.InferRequestedOutput, tritonclient.grpc.InferRequestedOutput]
    InferResult = Union[tritonclient.http.InferResult, tritonclient.grpc.InferResult]

Payload = Union[bytes, np.ndarray]  # what one image is sent as: encoded bytes (IMAGE) or BGR pixels (PIXELS)
PROTOCOLS = ("http", "grpc")
# getaddrinfo's answers for a name that does not exist (EAI_NODATA: it exists without an address); not EAI_AGAIN
PERMANENT_RESOLVER_ERRORS = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
OUTPUTS = tuple(t.name for t in C.ENSEMBLE_OUTPUTS)
ADMIN_HEADER = "admin-key"  # the header the images' entrypoint guards the admin APIs with (its ADMIN_HEADER)
RESTRICTED = "is restricted, expecting header"  # Triton's answer to a restricted API called without its header
# Triton's answers while it shuts down: it refuses new work, then unloads its models while still listening
STOPPING = ("Server is stopping",)
UNKNOWN_MODEL = "Request for unknown model"
UNLOADING = (UNKNOWN_MODEL, "Model version not ready", "is not ready")
MAX_DELAY = 10.0  # seconds: the longest wait between two attempts, however many are allowed
# A connection (HTTP keep-alive pool, gRPC channel) is made again once this old: behind a Kubernetes Service the
# new one may reach a pod added since, and a stopping Triton, which waits for its open HTTP connections before it
# unloads (until --exit-timeout-secs, after which the bundled 2.51 crashes), sees them go within this time.
MAX_CONNECTION_AGE = 10.0
# gRPC's own name-resolver targets: every address a name resolves to (dns:///damo-yolo-headless.ns.svc:8001, the
# headless Service's every ready pod) or a list (ipv4:10.0.0.1:8001,10.0.0.2:8001), balanced request by request
BALANCED_TARGETS = ("dns:", "ipv4:", "ipv6:")


def balanced(url: str) -> bool:
    """Is ``url`` one of gRPC's resolver targets, whose addresses the client balances over per request?"""
    return url.startswith(BALANCED_TARGETS)


def grpc_channel_args(url: str) -> Optional[list[tuple[str, Any]]]:
    """The gRPC channel's options for ``url``: tritonclient's own (message sizes, keep-alive) and, for a balanced
    target, the round_robin policy — a channel to every address, each request on the next ready one, a refused
    or closed address skipped. With the channel made again every MAX_CONNECTION_AGE, the name is resolved again
    and pods the autoscaler adds get requests within that time (gRPC's DNS resolver alone re-resolves only when
    a connection is lost). None: tritonclient's defaults."""
    if not balanced(url):
        return None
    from tritonclient.grpc import KeepAliveOptions
    from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE
    keepalive = KeepAliveOptions()
    return [("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
            ("grpc.lb_policy_name", "round_robin")]


def default_url(protocol: str) -> str:
    return f"127.0.0.1:{DEFAULT_PORTS[protocol]}"


def admin_headers(protocol: str, key: Optional[str], header: str = ADMIN_HEADER) -> Optional[dict[str, str]]:
    """The headers that carry the operator's key to a restricted API (None without a key): the header itself over
    HTTP, Triton's ``triton-grpc-protocol-`` prefixed metadata key over gRPC."""
    if not key:
        return None
    return {header if protocol == "http" else f"triton-grpc-protocol-{header}": key}


def _connection_error(exc: BaseException) -> bool:
    """Could the request not reach the server? (Those are safe to retry; a timeout or an answer is not.)"""
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, (ConnectionError, OSError)):
        return True
    if type(exc).__name__ == "HTTPConnectionClosed":  # geventhttpclient: closed with no answer (a server going away)
        return True
    try:
        import aiohttp
        if isinstance(exc, aiohttp.ClientConnectionError) and not isinstance(exc, aiohttp.ServerTimeoutError):
            return True
    except ImportError:
        pass
    status = getattr(exc, "status", None)
    return callable(status) and str(status()) == "StatusCode.UNAVAILABLE"


def _going_away(exc: BaseException, model_was_served: bool) -> bool:
    """Is this the answer of a server that is shutting down (so another attempt, perhaps on another replica,
    will be served)? "unknown model" counts only once the client has seen the model served: before that it is
    a wrong model name, which no retry mends."""
    text = _server_message(exc)
    if any(marker in text for marker in STOPPING):
        return True
    return model_was_served and any(marker in text for marker in UNLOADING)


def spoken_protocol(url: str, timeout: float = 2.0) -> Optional[str]:
    """Which protocol the server at ``url`` (host:port) speaks: "http" (HTTP/1.x answers a plain request),
    "grpc" (HTTP/2 frames, as Triton's gRPC port answers), or None (no answer, or something else)."""
    host, _, port = url.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: " + host.encode() + b"\r\nConnection: close\r\n\r\n")
            head = sock.recv(16)
    except (OSError, ValueError):
        return None
    if head.startswith(b"HTTP/1."):
        return "http"
    if len(head) >= 9 and head[3] == 0x04:  # an HTTP/2 SETTINGS frame: a gRPC server's first words
        return "grpc"
    return None


def _garbled_answer(exc: BaseException) -> bool:
    """An answer that is not HTTP/1.x (what an HTTP client reads from a gRPC port)."""
    text = str(exc)
    return type(exc).__name__ == "HTTPParseError" or "Expected HTTP/" in text or "Bad status line" in text


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)  # tritonclient's InferenceServerException.message(): the server's text
    text = message() if callable(message) else str(exc)
    return str(text or exc).strip()


class _ClientBase:
    """What the sync and async clients share: settings, the contract check, request and response forms."""

    def __init__(self, url: Optional[str] = None, protocol: str = "http", model: str = "damo_yolo",
                 timeout: float = 60.0, retries: int = 3, backoff: float = 0.5,
                 score_threshold: Optional[float] = None, iou_threshold: Optional[float] = None,
                 max_connection_age: float = MAX_CONNECTION_AGE):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose http or grpc")
        if retries < 0 or backoff < 0 or timeout <= 0 or max_connection_age <= 0:
            raise ValueError("retries and backoff must be >= 0, timeout and max_connection_age > 0")
        url = url or default_url(protocol)
        if balanced(url) and protocol != "grpc":
            raise ValueError(f"{url} is a gRPC resolver target (balanced per request over its addresses): use it "
                             f"with protocol grpc; over HTTP, give the Service's host:port")
        for prefix in ("http://", "https://", "grpc://"):
            url = url[len(prefix):] if url.startswith(prefix) else url
        self.url, self.protocol, self.model = url.rstrip("/"), protocol, model
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.max_batch_size: Optional[int] = None
        self.class_names: list[str] = []
        self.serving: Optional[C.ServingConfig] = None  # what the model serves with (input size, defaults, K, ...)
        self.export_info: dict = {}  # how the repository was made (damo_yolo release, target, checkpoint, TensorRT)
        self.image_datatype = C.IMAGE.datatype  # UINT8 where Triton's DALI backend preprocesses
        self.takes_pixels = False  # the model takes decoded BGR arrays as they are (PIXELS: the CPU target)
        self._mod: Optional[ModuleType] = None
        self._client: Optional[Union[SyncTriton, AsyncTriton]] = None  # the tritonclient client, made on first use
        self.max_connection_age = float(max_connection_age)
        self._connected_at = 0.0  # when _client was made (time.monotonic())

    @property
    def _connection_too_old(self) -> bool:
        return self._client is not None and time.monotonic() - self._connected_at > self.max_connection_age

    @property
    def module(self) -> ModuleType:
        """The tritonclient module of the protocol (for InferInput)."""
        if self._mod is None:
            if self.protocol == "http":
                import tritonclient.http as mod
            else:
                import tritonclient.grpc as mod
            self._mod = mod
        return self._mod

    @property
    def deadline_us(self) -> int:
        """The request's ``timeout`` sent to Triton (µs): a request still queued when the client would have
        given up is rejected by the server instead of computed for nobody (the repository's queue policy)."""
        return int(self.timeout * 1_000_000)

    def _delay(self, attempt: int) -> float:
        """backoff × 2^attempt, stretched by up to half at random so that the clients of a server that went away
        do not all come back in the same instant; never more than MAX_DELAY."""
        return min(self.backoff * (2 ** attempt) * random.uniform(1.0, 1.5), MAX_DELAY)

    def _wrong_protocol(self) -> Optional[WrongProtocol]:
        """The error to raise when the address speaks the other protocol (checked after a failure only)."""
        if balanced(self.url):
            return None  # many addresses: gRPC reports what it found at them
        spoken = spoken_protocol(self.url, min(self.timeout, 2.0))
        if spoken is None or spoken == self.protocol:
            return None
        port = DEFAULT_PORTS[self.protocol]
        return WrongProtocol(f"{self.url} speaks {'gRPC' if spoken == 'grpc' else 'HTTP'}, not "
                             f"{'gRPC' if self.protocol == 'grpc' else 'HTTP'}: use protocol {spoken!r} "
                             f"(--protocol {spoken}) with this address, or the server's {self.protocol} port "
                             f"({port} by default)")

    def _failure(self, exc: BaseException, what: str, last_attempt: bool) -> Optional[DamoClientError]:
        """The error to raise for ``exc`` now, or None to retry the call."""
        if isinstance(exc, DamoClientError):
            return exc
        if RESTRICTED in _server_message(exc):  # an answer (gRPC says UNAVAILABLE): no retry opens it
            return RestrictedAPI(f"{what}: {_server_message(exc)}")
        if _garbled_answer(exc) or (_connection_error(exc) and "Socket closed" in str(exc)):
            wrong = self._wrong_protocol()  # the address answered, but not in this protocol?
            if wrong is not None:
                return wrong
        if _going_away(exc, self.max_batch_size is not None):
            return self._unavailable(exc, what) if last_attempt else None
        if not _connection_error(exc):
            return self._error(exc, what)
        unknown = self._unknown_host()  # a name no retry will resolve
        if unknown is not None:
            return unknown
        return self._unavailable(exc, what) if last_attempt else None

    def _unknown_host(self) -> Optional[ServerUnavailable]:
        """The error to raise when the address's host name does not resolve (checked after a failure only). A
        resolver that is down for now (EAI_AGAIN) is not this: that is retried like a refused connection."""
        if balanced(self.url):
            return None  # gRPC resolves these itself
        host, colon, port = self.url.rpartition(":")
        host, port = (host.strip("[]"), port) if colon else (self.url, "")
        try:
            socket.getaddrinfo(host, int(port) if port.isdigit() else None)
        except socket.gaierror as exc:
            if exc.errno in PERMANENT_RESOLVER_ERRORS:
                return ServerUnavailable(f"cannot resolve host {host} ({exc.strerror}): check the address {self.url}")
        except (OSError, UnicodeError):
            pass
        return None

    def _unavailable(self, exc: BaseException, what: str) -> ServerUnavailable:
        return ServerUnavailable(f"cannot reach the server at {self.url} ({self.protocol}) for {what} after "
                                 f"{self.retries + 1} attempt(s): {_server_message(exc)} — is tritonserver running?")

    def _error(self, exc: BaseException, what: str) -> DamoClientError:
        if isinstance(exc, DamoClientError):
            return exc
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "DEADLINE_EXCEEDED" in str(exc) \
                or "timed out" in str(exc).lower():
            return ServerUnavailable(f"{what}: no answer from {self.url} within {self.timeout:g} s")
        return InferenceError(f"{what}: {_server_message(exc)}")

    def _unknown_model(self, index: Any) -> ContractError:
        """The error for a model the server does not answer for: not in its repository (the served ones named
        where the repository index is open; it is an admin API on the images), or there but not loaded (its
        state and the server's reason)."""
        if index is None:
            return ContractError(f"model {self.model!r} is not available at {self.url}; the repository index that "
                                 f"would say why is kept for the operator here: `damo-client models --admin-key "
                                 f"KEY`")
        models = index.get("models", []) if isinstance(index, dict) else index
        mine = [m for m in models if m.get("name") == self.model]
        if mine:
            state, reason = mine[-1].get("state", "") or "not loaded", mine[-1].get("reason", "")
            return ContractError(f"model {self.model!r} is in the repository at {self.url} but not ready: {state}"
                                 + (f" ({reason})" if reason else ""))
        names = sorted({m.get("name", "") for m in models if m.get("state", "READY") == "READY"} - {""})
        served = f"served: {', '.join(names)}" if names else "it serves no model now"
        return ContractError(f"model {self.model!r} is not served at {self.url}; {served} (--model NAME)")

    def _accept_contract(self, metadata: dict, config: dict) -> None:
        config = config.get("config", config)  # gRPC wraps the config
        inputs = {t["name"]: t["datatype"] for t in metadata.get("inputs", [])}
        outputs = {t["name"] for t in metadata.get("outputs", [])}
        image_types = (C.IMAGE.datatype, C.IMAGE_ENCODED.datatype)
        if inputs.get(C.IMAGE.name) not in image_types or not set(OUTPUTS) <= outputs:
            raise ContractError(f"model {self.model!r} at {self.url} is not a DAMO-YOLO detector: expected input "
                                f"{C.IMAGE.name} ({' or '.join(image_types)}) and outputs {', '.join(OUTPUTS)}; "
                                f"got inputs {inputs} and outputs {sorted(outputs)}")
        self.image_datatype = inputs[C.IMAGE.name]
        self.takes_pixels = inputs.get(C.PIXELS.name) == C.PIXELS.datatype
        self.max_batch_size = max(1, int(config.get("max_batch_size", 1)))
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        try:
            self.serving = C.ServingConfig.from_parameters(params)
        except ValueError as exc:
            raise ContractError(f"model {self.model!r} at {self.url}: {exc}") from None
        self.class_names = list(self.serving.class_names)
        self.export_info = json.loads(params["export"]) if params.get("export") else {}

    def _inputs(self, datas: list[Payload], score_threshold: Optional[float],
                iou_threshold: Optional[float]) -> list[InferInput]:
        mod, n = self.module, len(datas)
        if isinstance(datas[0], np.ndarray):  # decoded BGR images of one size (PIXELS)
            pixels = np.stack(datas)
            image = mod.InferInput(C.PIXELS.name, list(pixels.shape), C.PIXELS.datatype)
            image.set_data_from_numpy(pixels)
        elif self.image_datatype == C.IMAGE_ENCODED.datatype:  # the files' bytes, zero-padded to the longest
            rows = np.zeros((n, max(len(d) for d in datas)), np.uint8)
            for i, d in enumerate(datas):
                rows[i, :len(d)] = np.frombuffer(d, np.uint8)
            image = mod.InferInput(C.IMAGE.name, list(rows.shape), C.IMAGE_ENCODED.datatype)
            image.set_data_from_numpy(rows)
        else:
            image = mod.InferInput(C.IMAGE.name, [n, 1], C.IMAGE.datatype)
            image.set_data_from_numpy(np.array([[d] for d in datas], dtype=np.object_))
        inputs = [image]
        for spec, value in ((C.SCORE_THRESHOLD, score_threshold if score_threshold is not None
                             else self.score_threshold),
                            (C.IOU_THRESHOLD, iou_threshold if iou_threshold is not None else self.iou_threshold)):
            if value is not None:
                tensor = mod.InferInput(spec.name, [n, 1], spec.datatype)
                tensor.set_data_from_numpy(np.full((n, 1), value, np.float32))
                inputs.append(tensor)
        return inputs

    def _outputs(self) -> list[InferRequestedOutput]:
        return [self.module.InferRequestedOutput(name) for name in OUTPUTS]

    def _parse(self, result: InferResult) -> list[list[Detection]]:
        num = result.as_numpy(C.NUM_DETECTIONS.name).reshape(-1)
        boxes, scores, classes = (result.as_numpy(t.name) for t in (C.BOXES, C.SCORES, C.CLASSES))
        out = []
        for i, n in enumerate(num.tolist()):  # plain Python numbers, converted once per image
            out.append([Detection(box=tuple(box), score=score, class_id=cls, class_name=self._name(cls))
                        for box, score, cls in zip(boxes[i, :n].tolist(), scores[i, :n].tolist(),
                                                   classes[i, :n].tolist())])
        return out

    def _name(self, class_id: int) -> str:
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else f"class_{class_id}"

    @property
    def _as_json(self) -> dict[str, bool]:
        """gRPC answers metadata as protobuf unless asked for JSON; HTTP always answers JSON."""
        return {"as_json": True} if self.protocol == "grpc" else {}

    @staticmethod
    def _encode(images: list[ImageInput], score_threshold: Optional[float],
                iou_threshold: Optional[float]) -> list[Payload]:
        """Check the thresholds and turn every image into what is sent (before any request): encoded bytes, or a
        BGR uint8 [H, W, 3] array kept as it is (sent as PIXELS where the model takes them, else as PNG)."""
        if score_threshold is not None:
            C.SCORE_RANGE.check("score_threshold", score_threshold)
        if iou_threshold is not None:
            C.IOU_RANGE.check("iou_threshold", iou_threshold)
        datas: list[Payload] = []
        for i, image in enumerate(images):
            try:
                datas.append(image if isinstance(image, np.ndarray) and is_bgr(image) else to_bytes(image))
            except ImageError as exc:  # a path names itself; another input is named by its place in the batch
                named = isinstance(image, (str, os.PathLike)) or len(images) == 1
                raise ImageError(str(exc) if named else f"image {i} of {len(images)}: {exc}") from None
        return datas

    def _payloads(self, datas: list[Payload]) -> list[Payload]:
        """After the contract is read: arrays stay arrays only where the model takes PIXELS."""
        return datas if self.takes_pixels else [to_bytes(d) if isinstance(d, np.ndarray) else d for d in datas]

    def _check_images(self, datas: list[Payload]) -> None:
        """Before Triton's DALI backend (UINT8 input), an image it cannot decode fails every request batched
        with it, other clients' too: files that are not whole JPEG/PNG images are refused here, unsent."""
        if self.image_datatype != C.IMAGE_ENCODED.datatype:
            return
        from damo_yolo.data.preprocess import ImageDecodeError, check_encoded
        for i, data in enumerate(datas):
            try:
                check_encoded(data)  # type: ignore[arg-type]  # no arrays here: a DALI model takes no PIXELS
            except ImageDecodeError as exc:
                raise ImageError(f"image {i}: {exc} (not sent)") from None

    def _requests(self, datas: list[Payload], score_threshold: Optional[float],
                  iou_threshold: Optional[float]) -> Iterator[list[InferInput]]:
        """The inputs of each request, in order: the images in groups of the model's batch limit, each group of
        one kind (encoded bytes, or arrays of one size)."""
        step = self.max_batch_size or 1
        group: list[Payload] = []
        kind: object = None
        for data in datas:
            this = data.shape if isinstance(data, np.ndarray) else "encoded"
            if group and (this != kind or len(group) == step):
                yield self._inputs(group, score_threshold, iou_threshold)
                group = []
            group.append(data)
            kind = this
        if group:
            yield self._inputs(group, score_threshold, iou_threshold)


class DamoClient(_ClientBase):
    """A synchronous client; safe to use from one thread (make one per thread)."""

    _client: Optional[SyncTriton]

    @property
    def triton(self) -> SyncTriton:
        """The underlying tritonclient InferenceServerClient."""
        if self._client is None:
            if self.protocol == "http":
                self._client = self.module.InferenceServerClient(self.url, connection_timeout=self.timeout,
                                                                 network_timeout=self.timeout)
            else:
                self._client = self.module.InferenceServerClient(self.url, channel_args=grpc_channel_args(self.url))
            self._connected_at = time.monotonic()
        return self._client

    def _call(self, what: str, method: str, *args: object, **kwargs: object) -> Any:
        """``self.triton.<method>(...)``, retried with backoff on connection errors only."""
        if self.protocol == "grpc":
            kwargs.setdefault("client_timeout", self.timeout)
        if self._connection_too_old:
            self.close()
        for attempt in range(self.retries + 1):
            try:
                return getattr(self.triton, method)(*args, **kwargs)
            except Exception as exc:  # tritonclient raises OSError subclasses or InferenceServerException
                error = self._failure(exc, what, attempt == self.retries)
                if error is not None:
                    raise error from exc
                if self.protocol == "http":  # a fresh connection pool after a reset
                    self.close()
                time.sleep(self._delay(attempt))

    def connect(self) -> "DamoClient":
        """Read and check the model's contract (done automatically on first use)."""
        if self.max_batch_size is None:
            try:
                config = self._call("model config", "get_model_config", self.model, **self._as_json)
            except InferenceError as exc:
                if UNKNOWN_MODEL not in str(exc):
                    raise
                try:
                    index = self._call("repository index", "get_model_repository_index", **self._as_json)
                except DamoClientError:
                    index = None  # the index is an admin API on this server
                raise self._unknown_model(index) from None
            self._accept_contract(self.metadata(), config)
        return self

    def detect(self, image: ImageInput, score_threshold: Optional[float] = None,
               iou_threshold: Optional[float] = None) -> list[Detection]:
        """Detections in one image (a path, encoded bytes, a BGR numpy array or a binary file object)."""
        return self.detect_batch([image], score_threshold, iou_threshold)[0]

    def detect_batch(self, images: list[ImageInput], score_threshold: Optional[float] = None,
                     iou_threshold: Optional[float] = None) -> list[list[Detection]]:
        """Detections per image; images go in requests of up to the model's max batch size."""
        datas = self._encode(images, score_threshold, iou_threshold)
        self.connect()
        datas = self._payloads(datas)
        self._check_images(datas)
        out = []
        for inputs in self._requests(datas, score_threshold, iou_threshold):
            out.extend(self._parse(self._call("inference", "infer", self.model, inputs, outputs=self._outputs(),
                                              timeout=self.deadline_us)))
        return out

    def is_live(self) -> bool:
        return bool(self._call("liveness", "is_server_live"))

    def is_ready(self) -> bool:
        """Server ready and the model loaded."""
        return bool(self._call("readiness", "is_server_ready")) and \
            bool(self._call("model readiness", "is_model_ready", self.model))

    def metadata(self) -> dict:
        return self._call("model metadata", "get_model_metadata", self.model, **self._as_json)

    def models(self, admin_key: Optional[str] = None, admin_header: str = ADMIN_HEADER) -> list[dict]:
        """The repository's models: name, version, state (READY, UNAVAILABLE, ...) and reason. The repository index
        is an admin API where the server restricts it (the images do): ``admin_key`` is the operator's key, sent
        as ``admin_header``; without it RestrictedAPI is raised."""
        headers = admin_headers(self.protocol, admin_key, admin_header)
        try:
            index = self._call("repository index", "get_model_repository_index", headers=headers, **self._as_json)
        except RestrictedAPI as exc:
            raise RestrictedAPI(f"the repository index at {self.url} is an admin API on this server: "
                                f"{'the admin key was refused' if admin_key else 'give the admin key'} "
                                f"(--admin-key or DAMO_ADMIN_KEY)") from exc
        index = index.get("models", []) if isinstance(index, dict) else index
        return [{"name": m.get("name", ""), "version": m.get("version", ""), "state": m.get("state", ""),
                 "reason": m.get("reason", "")} for m in index]

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def __enter__(self) -> DamoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDamoClient(_ClientBase):
    """The asyncio client (tritonclient.http.aio / grpc.aio): the same methods, awaited."""

    _client: Optional[AsyncTriton]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._in_flight: dict[AsyncTriton, int] = {}  # calls running on each connection pool, old ones included
        self._closing: set[asyncio.Task] = set()

    @property
    def triton(self) -> AsyncTriton:
        if self._client is None:
            if self.protocol == "http":
                import tritonclient.http.aio as aio
                self._client = aio.InferenceServerClient(self.url, conn_timeout=self.timeout)
            else:
                import tritonclient.grpc.aio as aio
                self._client = aio.InferenceServerClient(self.url, channel_args=grpc_channel_args(self.url))
            self._connected_at = time.monotonic()
        return self._client

    async def _call(self, what: str, name: str, *args: object, **kwargs: object) -> Any:
        """``self.triton.<name>(...)`` awaited, retried as the sync client does. Many calls share one connection
        pool: a pool that is too old or failed is retired — new calls get a new one — and closed once the calls
        still running on it are done."""
        for attempt in range(self.retries + 1):
            if self._connection_too_old:
                self._retire()
            client = self.triton
            self._in_flight[client] = self._in_flight.get(client, 0) + 1
            try:
                return await asyncio.wait_for(getattr(client, name)(*args, **kwargs), self.timeout)
            except Exception as exc:
                error = await asyncio.to_thread(self._failure, exc, what, attempt == self.retries)
                if error is not None:
                    raise error from exc
                if client is self._client:
                    self._retire()
                await asyncio.sleep(self._delay(attempt))
            finally:
                self._in_flight[client] -= 1
                if client is not self._client and not self._in_flight[client]:
                    del self._in_flight[client]
                    await client.close()

    def _retire(self) -> None:
        """New calls get a new connection pool; the old one is closed by the last call running on it."""
        if self._client is not None and not self._in_flight.get(self._client):
            self._in_flight.pop(self._client, None)
            closing = asyncio.get_running_loop().create_task(self._client.close())
            self._closing.add(closing)  # held until done (the loop keeps only a weak reference)
            closing.add_done_callback(self._closing.discard)
        self._client = None

    async def connect(self) -> "AsyncDamoClient":
        if self.max_batch_size is None:
            try:
                metadata = await self._call("model metadata", "get_model_metadata", self.model, **self._as_json)
            except InferenceError as exc:
                if UNKNOWN_MODEL not in str(exc):
                    raise
                try:
                    index = await self._call("repository index", "get_model_repository_index", **self._as_json)
                except DamoClientError:
                    index = None
                raise self._unknown_model(index) from None
            config = await self._call("model config", "get_model_config", self.model, **self._as_json)
            self._accept_contract(metadata, config)
        return self

    async def detect(self, image: ImageInput, score_threshold: Optional[float] = None,
                     iou_threshold: Optional[float] = None) -> list[Detection]:
        return (await self.detect_batch([image], score_threshold, iou_threshold))[0]

    async def detect_batch(self, images: list[ImageInput], score_threshold: Optional[float] = None,
                           iou_threshold: Optional[float] = None) -> list[list[Detection]]:
        datas = self._encode(images, score_threshold, iou_threshold)
        await self.connect()
        datas = self._payloads(datas)
        self._check_images(datas)
        out = []
        for inputs in self._requests(datas, score_threshold, iou_threshold):
            out.extend(self._parse(await self._call("inference", "infer", self.model, inputs,
                                                    outputs=self._outputs(), timeout=self.deadline_us)))
        return out

    async def is_ready(self) -> bool:
        return bool(await self._call("readiness", "is_server_ready")) and \
            bool(await self._call("model readiness", "is_model_ready", self.model))

    async def is_live(self) -> bool:
        return bool(await self._call("liveness", "is_server_live"))

    async def close(self) -> None:
        clients = set(self._in_flight) | ({self._client} if self._client is not None else set())
        self._client, self._in_flight = None, {}
        for client in clients:
            await client.close()

    async def __aenter__(self) -> AsyncDamoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
