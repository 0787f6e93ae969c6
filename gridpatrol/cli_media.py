"""CLI commands about media: probing and discovering cameras, analysing clips, detector models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from gridpatrol.cli_common import fail, load_settings, open_db
from gridpatrol.cli_secrets import camera_keyring
from models.db.engine import transaction
from models.errors import GridPatrolError
from models.grid.cameras import CameraSpec, register_cameras, spec_from_row
from models.grid.credentials import set_camera_secrets
from models.secrets import redact_url


def register_media_commands(app: typer.Typer, cameras_app: typer.Typer) -> None:
    models_app = typer.Typer(help="Detector models (imported into <data dir>/models).", no_args_is_help=True)
    app.add_typer(models_app, name="models")

    @cameras_app.command("probe")
    def cameras_probe(
        url: Annotated[str, typer.Argument(help="rtsp://, http(s):// or a file")],
        seconds: Annotated[float, typer.Option(help="How long to read")] = 5.0,
        keyframes_only: Annotated[bool, typer.Option("--keyframes-only", help="Decode keyframes only")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
        udp: Annotated[bool, typer.Option("--udp", help="RTSP over UDP instead of TCP")] = False,
    ) -> None:
        """Open a stream with the worker's reader and report codec, resolution, rates and errors."""
        from ingest.probe import probe

        if seconds <= 0:
            fail("--seconds must be > 0")
        report = probe(url, seconds=seconds, keyframes_only=keyframes_only, transport="udp" if udp else "tcp")
        if as_json:
            print(json.dumps(report, ensure_ascii=False))
        else:
            for key, value in report.items():
                print(f"{key:>20}: {value}")
        if not report.get("ok"):
            raise typer.Exit(1)

    @cameras_app.command("discover")
    def cameras_discover(
        timeout: Annotated[float, typer.Option(help="Seconds to listen for answers")] = 3.0,
        as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout")] = False,
    ) -> None:
        """Find ONVIF devices on the local network (WS-Discovery)."""
        from ingest.onvif import discover

        found = discover(timeout)
        for dev in found:
            print(json.dumps(dev.to_dict(), ensure_ascii=False) if as_json else "  ".join(f"{k}={v}" for k, v in dev.to_dict().items()))
        if not as_json:
            print(f"{len(found)} device(s) found", file=sys.stderr)

    @cameras_app.command("add")
    def cameras_add(
        name: Annotated[str, typer.Argument(help="Camera name (unique)")],
        onvif: Annotated[str, typer.Option(help="ONVIF device address http://HOST:PORT")],
        user: Annotated[str, typer.Option(help="ONVIF user")] = "",
        password: Annotated[str, typer.Option(help="ONVIF password")] = "",
        lon: Annotated[float | None, typer.Option(help="Longitude")] = None,
        lat: Annotated[float | None, typer.Option(help="Latitude")] = None,
        grid: Annotated[str | None, typer.Option(help="Pin to this grid code instead of placing by location")] = None,
    ) -> None:
        """Register an ONVIF camera: its main stream (主码流, the largest profile) and sub-stream (子码流, the
        next lower resolution) are asked from the device; the worker analyses the sub-stream."""
        from ingest.onvif import describe, with_credentials

        try:
            device = describe(onvif, user, password)
        except GridPatrolError as err:
            fail(f"{redact_url(onvif)}: {err}")
        main, sub = device.main_profile, device.sub_profile
        if main is None or not main.stream_uri:
            fail(f"{redact_url(onvif)}: the device offers no stream URI")
        stream = with_credentials(main.stream_uri, user, password)
        sub_stream = with_credentials(sub.stream_uri, user, password) if sub is not None and sub.stream_uri else None
        row = {"name": name, "url": stream, "sub_url": sub_stream, "lon": lon, "lat": lat, "onvif": onvif, "grid": grid}
        settings = load_settings()
        try:
            spec: CameraSpec = spec_from_row(row, where="camera")
            factory = open_db(settings)
            keyring = camera_keyring(settings, factory)
            with transaction(factory) as session:
                report = register_cameras(session, [spec], credentials=keyring)
                from sqlalchemy import select

                from models.db.tables import Camera

                cam = session.scalars(select(Camera).where(Camera.name == name)).one()
                cam.onvif_username = user or None
                set_camera_secrets(cam, keyring, onvif_password=password or None)
        except GridPatrolError as err:
            fail(str(err))
        info = device.to_dict()
        sizes = {label: "x".join(map(str, p.resolution_wh)) if p is not None and p.resolution_wh else "?" for label, p in
                 (("main", main), ("sub", sub))}  # fmt: skip
        print(f"camera {name}: {'created' if report.created else 'updated'}; main stream {redact_url(stream)} ({sizes['main']}); "
              + (f"sub-stream {redact_url(sub_stream)} ({sizes['sub']}), analysed; " if sub_stream else "no sub-stream; ")
              + f"{info.get('manufacturer', '')} {info.get('model', '')}".rstrip())
        if report.outside:
            print(f"warning: {name} lies outside every grid (visible to admins/operators only)")

    @app.command("analyze")
    def analyze(
        clip: Annotated[Path, typer.Argument(help="A recorded clip")],
        zones: Annotated[Path, typer.Option(help="Zones JSON file")],
        backend: Annotated[str, typer.Option(help="classic | onnx | yolo")] = "classic",
        model: Annotated[str | None, typer.Option(help="onnx model name/path or yolo .pt weights")] = None,
        fps: Annotated[float, typer.Option(help="Analysis rate (frames per second of clip time)")] = 2.0,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event")] = False,
    ) -> None:
        """Run the worker's exact pipeline over a clip, as fast as possible, and print the rule events."""
        from gridpatrol.analyze import run_analyze

        if not clip.is_file():
            fail(f"{clip}: no such file")
        settings = load_settings()
        code = run_analyze(clip, zones, backend=backend, model=model, fps=fps, json_out=as_json, models_dir=settings.models_dir)
        if code:
            raise typer.Exit(code)

    @models_app.command("import")
    def models_import(
        files: Annotated[list[Path], typer.Argument(help="NAME.cfg NAME.weights (Darknet) or NAME.onnx")],
        name: Annotated[str | None, typer.Option(help="Name to store it under")] = None,
        names: Annotated[Path | None, typer.Option(help="Class names file (coco.names)")] = None,
        input_size: Annotated[int, typer.Option(help="Network input size for Darknet models")] = 416,
        int8_calibrate: Annotated[list[Path] | None, typer.Option(
            "--int8-calibrate", help="Also store NAME-int8, calibrated on this clip (repeatable)")] = None,
    ) -> None:
        """Import a detector model (Darknet YOLOv3/v4 models are converted to ONNX)."""
        from gridpatrol.model_store import import_model, quantize_model

        settings = load_settings()
        try:
            path = import_model(files, models_dir=settings.models_dir, name=name, names_path=names, input_size=input_size)
        except GridPatrolError as err:
            fail(str(err))
        print(f"model stored: {path}")
        if int8_calibrate:
            try:
                int8 = quantize_model(str(path), int8_calibrate, models_dir=settings.models_dir)
            except GridPatrolError as err:
                fail(f"--int8-calibrate: {err}")
            print(f"int8 model stored: {int8}")

    @models_app.command("quantize")
    def models_quantize(
        model: Annotated[str, typer.Argument(help="A stored FP32 model's name (or an .onnx path)")],
        calibrate: Annotated[list[Path], typer.Option(
            "--calibrate", help="A clip from the cameras the model will watch (repeatable)")],
        name: Annotated[str | None, typer.Option(help="Name to store it under (default NAME-int8)")] = None,
        frames: Annotated[int, typer.Option(help="Calibration frames drawn from the clips")] = 64,
    ) -> None:
        """Store the INT8 version of a model (about twice as fast on CPU); the FP32 one stays."""
        from gridpatrol.model_store import quantize_model
        from models.errors import StreamError

        settings = load_settings()
        try:
            path = quantize_model(model, calibrate, models_dir=settings.models_dir, out_name=name, frames=frames)
        except StreamError as err:
            fail(f"--calibrate: {err}")
        except GridPatrolError as err:
            fail(str(err))
        print(f"int8 model stored: {path} (pick it with GRIDPATROL_DETECTOR_MODEL={path.stem})")

    @models_app.command("list")
    def models_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List imported detector models."""
        from gridpatrol.model_store import list_models

        settings = load_settings()
        for info in list_models(settings.models_dir):
            print(json.dumps(info.to_json()) if as_json else f"{info.name}  {info.source}  {info.precision}  {info.classes} classes  {info.input_size}  {info.path}")
