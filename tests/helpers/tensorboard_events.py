"""Reading a run's TensorBoard event files back with tensorboard's own reader."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def _accumulators(log_dir: Path) -> list[EventAccumulator]:
    """One reader per event file (Lightning starts a new file after fit, for test, for hparams)."""
    files = sorted(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event files below {log_dir}"
    return [EventAccumulator(str(path)).Reload() for path in files]


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] over every event file below log_dir."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for accumulator in _accumulators(log_dir):
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((event.step, event.value) for event in accumulator.Scalars(tag))
    return scalars


def has_graph(log_dir: Path) -> bool:
    return any(accumulator.Tags()["graph"] for accumulator in _accumulators(log_dir))


def hparams(log_dir: Path) -> tuple[dict[str, object], list[str]]:
    """The hyperparameters of the run's hparams-tab row and the names of its metrics."""
    for accumulator in _accumulators(log_dir):
        try:
            content = accumulator.PluginTagToContent("hparams")
        except KeyError:  # this event file holds no hparams summary
            continue
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        values = {
            name: value.number_value if value.HasField("number_value") else value.string_value
            for name, value in start.hparams.items()
        }
        return values, [info.name.tag for info in experiment.metric_infos]
    raise AssertionError(f"no hparams summary below {log_dir}")


def read_scalars_as_shown(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows the folder: its event files in order, with the points an
    interrupted session logged after the checkpoint a resumed session restarted from dropped."""
    accumulator = EventAccumulator(str(log_dir), purge_orphaned_data=True).Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def image_tags(log_dir: Path) -> dict[str, int]:
    """tag -> number of images logged under it, over every event file below log_dir."""
    counts: dict[str, int] = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path), size_guidance={"images": 0}).Reload()
        for tag in accumulator.Tags()["images"]:
            counts[tag] = counts.get(tag, 0) + len(accumulator.Images(tag))
    return counts


def custom_scalar_charts(log_dir: Path) -> dict[str, list[str]]:
    """Chart title -> the tag regexes of its lines, from the Custom Scalars layout written below log_dir."""
    from tensorboard.plugins.custom_scalar import layout_pb2

    charts: dict[str, list[str]] = {}
    for accumulator in _accumulators(log_dir):
        if "custom_scalars__config__" not in accumulator.Tags()["tensors"]:
            continue
        for event in accumulator.Tensors("custom_scalars__config__"):
            layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
            for category in layout.category:
                for chart in category.chart:
                    charts[chart.title] = list(chart.multiline.tag)
    return charts
