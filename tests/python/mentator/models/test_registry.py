from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from mentator.models.registry import LOG_PIPE, ModelRegistry
from mentator_testing.recording_logger import RecordingLogger

MakeGguf = Callable[..., Path]


def test_rescan_reports_and_logs_added_and_removed(tmp_path: Path, make_gguf: MakeGguf) -> None:
    logger = RecordingLogger()
    registry = ModelRegistry(tmp_path, logger)
    assert registry.find("a") is None and not registry.scanned
    make_gguf(tmp_path / "a.gguf")
    make_gguf(tmp_path / "b.gguf")
    assert registry.rescan() == (["a.gguf", "b.gguf"], [])
    assert registry.scanned
    assert logger.lines == [("debug", LOG_PIPE, 'add model(s): "a.gguf", "b.gguf";')]
    (tmp_path / "a.gguf").unlink()
    make_gguf(tmp_path / "c.gguf")
    assert registry.rescan() == (["c.gguf"], ["a.gguf"])
    assert logger.lines[1:] == [
        ("debug", LOG_PIPE, 'add model(s): "c.gguf";'),
        ("debug", LOG_PIPE, 'remove model(s): "a.gguf";'),
    ]
    assert registry.rescan() == ([], [])
    assert len(logger.lines) == 3
    assert [m.name for m in registry.models()] == ["b.gguf", "c.gguf"]
    found = registry.find("C")
    assert found is not None and found.name == "c.gguf"


def test_missing_dir_empties_list_and_logs_error(tmp_path: Path, make_gguf: MakeGguf) -> None:
    logger = RecordingLogger()
    model_dir = tmp_path / "models"
    make_gguf(model_dir / "a.gguf")
    registry = ModelRegistry(model_dir, logger)
    registry.rescan()
    shutil.rmtree(model_dir)
    assert registry.rescan() == ([], ["a.gguf"])
    errors = [line for line in logger.lines if line[0] == "error"]
    assert len(errors) == 1 and "on read dir" in errors[0][2] and str(model_dir) in errors[0][2]
    assert registry.models() == []


def test_rescan_is_thread_safe(tmp_path: Path, make_gguf: MakeGguf) -> None:
    for index in range(5):
        make_gguf(tmp_path / f"m{index}.gguf")
    logger = RecordingLogger()
    registry = ModelRegistry(tmp_path, logger)
    threads = [threading.Thread(target=registry.rescan) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # exactly one scan saw the models as new; the others saw no change
    assert [line[2] for line in logger.lines].count(
        'add model(s): "m0.gguf", "m1.gguf", "m2.gguf", "m3.gguf", "m4.gguf";'
    ) == 1
    assert len(logger.lines) == 1


def test_run_periodic_rescans_until_stopped(tmp_path: Path, make_gguf: MakeGguf) -> None:
    logger = RecordingLogger()
    registry = ModelRegistry(tmp_path, logger, interval_s=0.05)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(registry.run_periodic(stop))
        await asyncio.sleep(0.02)
        assert registry.scanned and registry.models() == []
        make_gguf(tmp_path / "late.gguf")
        for _ in range(100):
            if registry.find("late") is not None:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(scenario())
    assert registry.find("late.gguf") is not None
    assert ("debug", LOG_PIPE, 'add model(s): "late.gguf";') in logger.lines
