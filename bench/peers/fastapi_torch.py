# Peer: FastAPI + PyTorch (Debian's python3-fastapi, python3-uvicorn, python3-torch), the server a
# Python team would run: the digits MLP rebuilt as a torch module from its exported weights,
# torch.no_grad() forward per request, OIP JSON in and out. With --workers N, uvicorn runs N worker
# processes on one port (FastAPI's "Server Workers" advice: one per core), each with one torch
# thread, as the Node cluster peers run one onnxruntime thread per process; GET /v2/health/ready
# answers 503 until every worker has started, so a benchmark never measures a half-started server.
# Usage: /usr/bin/python3 bench/peers/fastapi_torch.py PORT WEIGHTS.json [--workers N] [--selftest]
import json
import os
import sys
import tempfile

import torch

torch.set_num_threads(1)


class Digits(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        t = lambda name: torch.tensor(weights[name]["data"], dtype=torch.float32).reshape(weights[name]["dims"])
        self.scale = t("pixel_scale")
        self.fc1 = torch.nn.Linear(*reversed(weights["fc1.weight"]["dims"]))
        self.fc2 = torch.nn.Linear(*reversed(weights["fc2.weight"]["dims"]))
        with torch.no_grad():
            self.fc1.weight.copy_(t("fc1.weight"))
            self.fc1.bias.copy_(t("fc1.bias"))
            self.fc2.weight.copy_(t("fc2.weight"))
            self.fc2.bias.copy_(t("fc2.bias"))

    def forward(self, pixels):
        logits = self.fc2(torch.relu(self.fc1(pixels * self.scale)))
        return torch.softmax(logits, dim=1), torch.argmax(logits, dim=1)


def create_app():
    """One worker's app (uvicorn's factory): the model from UMBRA_PEER_WEIGHTS, and readiness once
    UMBRA_PEER_WORKERS workers have each left a file in UMBRA_PEER_READY_DIR."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    with open(os.environ["UMBRA_PEER_WEIGHTS"]) as f:
        model = Digits(json.load(f)).eval()
    ready_dir, workers = os.environ["UMBRA_PEER_READY_DIR"], int(os.environ["UMBRA_PEER_WORKERS"])
    app = FastAPI()

    @app.on_event("startup")
    def started():
        open(os.path.join(ready_dir, str(os.getpid())), "w").close()

    @app.get("/v2/health/ready")
    def ready():
        every = len(os.listdir(ready_dir)) >= workers
        return JSONResponse({"ready": every}, status_code=200 if every else 503)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        body = await request.json()
        try:
            first = body["inputs"][0]
            pixels = torch.tensor(first["data"], dtype=torch.float32).reshape(first["shape"])
            with torch.no_grad():
                probs, label = model(pixels)
        except Exception as err:  # the error travels back as OIP JSON, like the other peers
            return JSONResponse({"error": str(err)}, status_code=400)
        return {
            "model_name": name,
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": list(probs.shape), "data": probs.flatten().tolist()},
                {"name": "label", "datatype": "INT64", "shape": list(label.shape), "data": label.tolist()},
            ],
        }

    return app


def main():
    port, weights_file = int(sys.argv[1]), sys.argv[2]
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 1
    if "--selftest" in sys.argv:
        with open(weights_file) as f:
            model = Digits(json.load(f)).eval()
        probs, label = model(torch.rand(2, 64) * 16)
        print(json.dumps({"shape": list(probs.shape), "sum": float(probs.sum()), "label": label.tolist()}))
        return

    import uvicorn

    with tempfile.TemporaryDirectory() as ready_dir:
        os.environ.update(UMBRA_PEER_WEIGHTS=os.path.abspath(weights_file), UMBRA_PEER_READY_DIR=ready_dir, UMBRA_PEER_WORKERS=str(workers))
        uvicorn.run("fastapi_torch:create_app", factory=True, app_dir=os.path.dirname(os.path.abspath(__file__)),
                    host="127.0.0.1", port=port, workers=workers, log_level="warning")


if __name__ == "__main__":
    main()
