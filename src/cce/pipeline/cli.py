"""Command-line entry points (``python -m cce ...``) that the workflow's rules call.

Each subcommand parses its arguments, calls one library function and writes
its output atomically. Errors a user can fix (bad config, missing data) end
with one message on stderr and exit code 2; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class UserError(Exception):
    """An error whose message tells the user what to do; no traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line like every other user error: one line, exit 2.

    argparse's own ``error`` prints the usage block first; subcommand parsers inherit
    this class (``add_subparsers`` uses the parent's class).
    """

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def cmd_check_config(args) -> None:
    from .config import ConfigError, load_config

    try:
        load_config(args.config)
    except ConfigError as err:
        raise UserError(str(err)) from err
    print(f"{args.config}: valid")


def cmd_recover(args) -> None:
    from .recover import AnotherRunActive, recover

    try:
        done = recover(args.workdir)
    except AnotherRunActive as err:
        raise UserError(str(err)) from err
    except OSError as err:
        raise UserError(f"{err}; if no other Snakemake runs in {args.workdir}, run it again with --unlock") from err
    if done.message():
        print(done.message())


def cmd_lock(args) -> None:
    from ..lock import write_lock

    print(f"wrote {write_lock(args.out, extras=args.extras)}")


def cmd_data(args) -> None:
    from .. import data

    try:
        manifest = data.prepare(args.dataset, args.root, local_dir=args.local_dir, download=not args.no_download,
                                mirrors=args.mirror or None, timeout=args.timeout)
    except (KeyError, data.DataUnavailableError, data.DataVerificationError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    print(f"{args.dataset}: ready ({manifest})")


def cmd_features(args) -> None:
    from .. import data
    from ..data import features

    try:
        X, y, meta = features.extract_dataset(args.dataset, args.root, args.extractor, **args.options)
    except (KeyError, ValueError, TypeError, data.DataUnavailableError, data.DataVerificationError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    features.save_features(args.out, X, y, meta)
    print(f"{args.dataset}/{args.extractor}: X {X.shape} {X.dtype} -> {args.out}")


def cmd_cluster(args) -> None:
    from ..data.features import FeatureFileError
    from ..device import DeviceError
    from ..methods import get_method
    from .runs import run_clustering, write_record

    try:  # an unknown method or option is refused before the features are read
        get_method(args.method).options(args.options)
    except (KeyError, ValueError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    try:
        record = run_clustering(args.features, args.method, args.seed, args.options,
                                experiment=args.experiment, config_name=args.config_name,
                                predictions=_predictions_path(args))
    except (FeatureFileError, DeviceError) as err:
        raise UserError(str(err)) from err
    write_record(args.out, record)
    m = record["metrics"]
    print(f"{record['dataset']} {args.method} seed {args.seed}: accuracy {m['accuracy']:.4f} "
          f"nmi {m['nmi']:.4f} ari {m['ari']:.4f} clusters {m['n_clusters_nonempty']} "
          f"({record['wall_time_s']:.1f} s)")


def _predictions_path(args) -> Path:
    from ..predictions import predictions_path

    return args.predictions or predictions_path(args.out)


def _records(paths):
    from .runs import RecordError
    from .tables import records_frame

    try:
        return records_frame(paths)
    except RecordError as err:
        raise UserError(str(err)) from err


def cmd_table(args) -> None:
    from ..io import atomic_path
    from .tables import paper_layout, split_columns, summary

    runs = _records(args.runs)
    if args.columns_by:
        runs = split_columns(runs, args.columns_by)
    table = paper_layout(runs, args.methods, args.datasets, metric=args.metric)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    if args.summary_out:
        with atomic_path(args.summary_out) as tmp:
            summary(runs).to_csv(tmp, index=False, float_format="%.6g")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def cmd_summarize(args) -> None:
    from ..io import atomic_path
    from .tables import summary

    runs = _records(args.runs)
    table = summary(runs, by=args.by)
    with atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    if args.runs_out:
        with atomic_path(args.runs_out) as tmp:
            runs.to_csv(tmp, index=False, float_format="%.6g")
    print(table.to_string(index=False))


def cmd_curves(args) -> None:
    from ..io import atomic_path
    from .tables import curves_frame

    curves = curves_frame(args.runs)
    with atomic_path(args.out) as tmp:
        curves.to_csv(tmp, index=False, float_format="%.6g")
    last = curves.groupby(["dataset", "method"], sort=False).apply(
        lambda g: g[g["epoch"] == g["epoch"].max()][["loss", "accuracy"]].mean(), include_groups=False)
    print(f"{len(curves)} epochs of {curves.groupby(['dataset', 'method', 'seed']).ngroups} runs; last epoch, "
          f"mean over seeds:\n{last.to_string(float_format=lambda v: f'{v:.4f}')}")


def cmd_table1(args) -> None:
    import torch

    from ..device import DeviceError, resolve_device
    from ..io import atomic_path
    from .table1 import table1_readings

    opts = dict(args.options)
    try:
        opts["device"] = str(resolve_device(opts.get("device", "cpu")))
    except DeviceError as err:
        raise UserError(str(err)) from err
    print(f"Table 1 on {opts.get('device', 'cpu')} with {torch.get_num_threads()} torch thread(s): {args.options}",
          file=sys.stderr)
    table, summary = table1_readings(**opts)
    with atomic_path(args.out) as tmp:
        table.drop(columns=["objective"]).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(args.summary_out) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    if args.trajectories_out:
        from ..io import write_json_atomic

        write_json_atomic(args.trajectories_out, table[["lam_scale", "method", "K", "step", "objective"]]
                          .to_dict(orient="records"))
    cols = ["lam_scale", "K", "pgd_step", "pgd_time", "em_time", "sq_time", "ratio_at_equal_objective_em",
            "ratio_at_equal_objective_sq", "squarem_speedup"]
    print(summary[[c for c in cols if c in summary]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def cmd_notebook(args) -> None:
    from .notebooks import NotebookFailed, run_notebook

    params = {}
    for key, value in args.param:
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    try:
        run_notebook(args.template, args.out, html=args.html, log_copy=args.log_notebook, parameters=params)
    except NotebookFailed as err:
        raise UserError(str(err)) from err


def _run_with_checkpoint(args, what: str, check, run) -> None:
    """One training run of ``deep``, ``weak`` or ``noisy``: refuse bad input before loading anything,
    train with a checkpoint (resumed when present), write the record, then drop the checkpoint
    unless ``--keep-checkpoint``."""
    from .. import data
    from ..device import DeviceError
    from ..training.deep import DeepRunError, TrainingStopped
    from .runs import write_record

    try:  # an unknown dataset, method, loss or option is refused before anything is loaded
        data.get_spec(args.dataset)
        check()
    except (KeyError, ValueError, DeepRunError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    checkpoint = args.checkpoint or args.out.with_suffix(".ckpt")
    try:
        record = run(checkpoint)
    except (DeepRunError, DeviceError, data.DataUnavailableError, data.DataVerificationError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    except TrainingStopped as stop:
        print(f"{args.dataset} {what} seed {args.seed}: {stop}; run the same command without "
              "--stop-after-epoch to resume")
        return
    if not args.keep_checkpoint:
        # The record holds what the tables need; the network's state is tens of MB per run.
        record["checkpoint"] = None
    write_record(args.out, record)
    if not args.keep_checkpoint:
        checkpoint.unlink(missing_ok=True)
    m = record["metrics"]
    scores = (f"test accuracy {m['accuracy']:.4f} (Hungarian {m['hungarian_accuracy']:.4f})"
              if "hungarian_accuracy" in m else
              f"accuracy {m['accuracy']:.4f} nmi {m['nmi']:.4f} ari {m['ari']:.4f} clusters {m['n_clusters_nonempty']}")
    kept = f"checkpoint {checkpoint}" if args.keep_checkpoint else "checkpoint deleted"
    print(f"{args.dataset} {what} seed {args.seed}: {scores} on {record['device']} "
          f"({record['wall_time_s']:.1f} s; {kept})")


def cmd_deep(args) -> None:
    from ..training.deep import get_deep_method, run_deep

    _run_with_checkpoint(args, args.method, lambda: get_deep_method(args.method).options(args.options),
                         lambda ck: run_deep(args.dataset, args.root, args.method, args.seed, args.options,
                                             experiment=args.experiment, config_name=args.config_name,
                                             checkpoint=ck, stop_after_epoch=args.stop_after_epoch,
                                             predictions=_predictions_path(args)))


def cmd_weak(args) -> None:
    from ..training.weak import run_weak, weak_options

    _run_with_checkpoint(args, f"{args.method} fraction {args.fraction:g}",
                         lambda: weak_options(args.method, args.options),
                         lambda ck: run_weak(args.dataset, args.root, args.method, args.seed, args.fraction,
                                             args.options, experiment=args.experiment, config_name=args.config_name,
                                             checkpoint=ck, stop_after_epoch=args.stop_after_epoch,
                                             predictions=_predictions_path(args)))


def cmd_noisy(args) -> None:
    from ..training.weak import check_noisy, noisy_options, run_noisy

    def check():
        check_noisy(args.loss, args.eta)
        noisy_options(args.options)

    _run_with_checkpoint(args, f"{args.loss} eta {args.eta:g}", check,
                         lambda ck: run_noisy(args.dataset, args.root, args.loss, args.eta, args.seed, args.options,
                                              experiment=args.experiment, config_name=args.config_name,
                                              checkpoint=ck, stop_after_epoch=args.stop_after_epoch,
                                              predictions=_predictions_path(args)))


def _image_errors():
    from .. import data
    from ..data.features import FeatureFileError
    from ..device import DeviceError
    from .images import ClusterImagesError

    return (KeyError, ValueError, TypeError, data.DataUnavailableError, data.DataVerificationError,
            FeatureFileError, DeviceError, ClusterImagesError)


def cmd_cluster_images(args) -> None:
    from .images import cluster_images, print_summary

    errors = _image_errors()
    try:
        summary = cluster_images(args.folder, args.clusters, method=args.method, compare=args.compare,
                                 extractor=args.extractor, out=args.out, seed=args.seed, options=args.options,
                                 extractor_options=args.extractor_options, labels=not args.no_labels, top=args.top,
                                 progress=not args.quiet)
    except errors as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    print_summary(summary)


def cmd_image_features(args) -> None:
    from ..data.image_folder import scan
    from .images import folder_features

    try:
        folder = scan(args.folder)
        if args.require_labels and not folder.labelled:
            raise ValueError(f"{args.folder}: the workflow scores clusters against labels; put the images in "
                             "one sub-folder per class, or cluster an unlabelled folder with "
                             "`python -m cce cluster-images`")
        X, y, meta, _ = folder_features(folder, args.extractor, args.out, args.options, labels=True,
                                        name=args.name)
    except _image_errors() as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    for s in meta["skipped"]:
        print(f"skipped {s['path']}: {s['error']}")
    print(f"{meta['dataset']}/{args.extractor}: X {X.shape} {X.dtype} of {meta['source']['n_files']} files "
          f"({len(meta['skipped'])} skipped) -> {args.out}")


def cmd_gallery(args) -> None:
    from .images import gallery_of_run
    from .runs import RecordError

    try:
        shown = gallery_of_run(args.record, args.root, args.out, top=args.top, predictions_path=args.predictions)
    except (*_image_errors(), RecordError) as err:
        raise UserError(err.args[0] if err.args else str(err)) from err
    score = (f"accuracy {shown['accuracy']:.4f} (record {shown['record_accuracy']:.4f})"
             if shown["accuracy"] is not None else "no labels")
    print(f"{args.out}: {shown['images']} images in {shown['clusters']} clusters; {score}")


def _add_run_arguments(p, experiment: str) -> None:
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", type=Path, default=Path("resources/data"))
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--options", type=_json_arg, default={}, help="options as a JSON object")
    p.add_argument("--experiment", default=experiment)
    p.add_argument("--config-name", default=None, help="the config file the run came from, for the record")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="saved after every epoch and resumed from when present (default: OUT with suffix .ckpt)")
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the last checkpoint (the trained network) after the record is written")
    p.add_argument("--stop-after-epoch", type=int, default=None,
                   help="stop after this epoch's checkpoint without writing the record (to try a resume)")
    _add_predictions_argument(p)


def _add_predictions_argument(p) -> None:
    p.add_argument("--predictions", type=Path, default=None,
                   help="the cluster and confidence of every image, NPZ (default: OUT with suffix .predictions.npz)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cce", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a workflow config file")
    p.add_argument("config", type=Path)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("recover", help="after an interrupted run: remove Snakemake's stale lock and stop the "
                       "jobs it left running, when no Snakemake process runs in the directory")
    p.add_argument("workdir", type=Path, nargs="?", default=Path("."))
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("lock", help="write the exact versions of this environment as a lock (make lock)")
    p.add_argument("--out", type=Path, default=Path("requirements.lock"))
    p.add_argument("--extras", default="workflow,test,images", help="the extras the environment was installed with")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("data", help="download or copy a dataset and verify it")
    p.add_argument("dataset")
    p.add_argument("--root", type=Path, default=Path("resources/data"))
    p.add_argument("--local-dir", type=Path, default=None, help="copy the files from this directory")
    p.add_argument("--no-download", action="store_true", help="never touch the network")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="base URL to download from instead of the registry's (repeatable; tried in order)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per connect or read")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("features", help="extract fixed features of a prepared dataset")
    p.add_argument("dataset")
    p.add_argument("extractor")
    p.add_argument("--root", type=Path, default=Path("resources/data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--options", type=_json_arg, default={}, help="extractor options as a JSON object")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("cluster", help="one clustering run on fixed features -> JSON record")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--options", type=_json_arg, default={}, help="method options as a JSON object")
    p.add_argument("--experiment", default="clustering")
    p.add_argument("--config-name", default=None, help="the config file the run came from, for the record")
    p.add_argument("--out", type=Path, required=True)
    _add_predictions_argument(p)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("table", help="aggregate run records into a table in the paper's layout")
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--metric", default="accuracy")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summary-out", type=Path, default=None, help="also write all metrics, long format")
    p.add_argument("--columns-by", default=None, choices=["fraction", "eta"],
                   help="one column per dataset and value of this field, named {dataset}@{value} (Table 4)")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("summarize", help="mean and std over seeds of every metric, grouped")
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--by", nargs="+", default=["dataset", "method"],
                   help="columns to group by (dataset, method, lam_scale, lam, fraction, eta, loss, ...)")
    p.add_argument("--runs-out", type=Path, default=None, help="also write one row per run record")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("curves", help="per-epoch curves (loss, accuracy, ...) of run records, long format CSV")
    p.add_argument("--runs", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("table1", help="Table 1: EM against PGD on the pseudo-label subproblem")
    p.add_argument("--options", type=_json_arg, default={}, help="arguments of cce.pipeline.table1.table1_readings")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summary-out", type=Path, required=True)
    p.add_argument("--trajectories-out", type=Path, default=None, help="objective after every iteration, JSON")
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("notebook", help="execute a papermill notebook and render it to HTML")
    p.add_argument("template", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--html", type=Path, default=None)
    p.add_argument("--log-notebook", type=Path, default=None,
                   help="also keep the executed notebook here (the rule's log): it shows a failing cell's error")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.set_defaults(func=cmd_notebook)

    p = sub.add_parser("deep", help="one deep run (Table 3/6): a Table 7 network trained from scratch -> JSON record")
    _add_run_arguments(p, "deep")
    p.add_argument("--method", required=True, help="mi_d, iic, sela, mi_adm, cce or cce_plus")
    p.set_defaults(func=cmd_deep)

    p = sub.add_parser("weak", help="one weakly-supervised run (Table 4): a fraction of the train labels -> "
                                    "JSON record with test accuracy")
    _add_run_arguments(p, "weak")
    p.add_argument("--method", required=True, help="seeds_only, mi_d, iic, sela, mi_adm or cce_plus")
    p.add_argument("--fraction", type=float, required=True, help="labelled fraction of every class, e.g. 0.1")
    p.set_defaults(func=cmd_weak)

    p = sub.add_parser("noisy", help="one noisy-label run (Figure 2): soft targets, loss H, H2 or GCE -> JSON record")
    _add_run_arguments(p, "noisy")
    p.add_argument("--loss", required=True, help="shannon (H, eq. 8), collision (H2, eq. 9) or gce (L_q, q = 0.7)")
    p.add_argument("--eta", type=float, required=True,
                   help="fraction of training labels replaced by random ones (option 'noise': random | other)")
    p.set_defaults(func=cmd_noisy)

    p = sub.add_parser("cluster-images", help="cluster a folder of images (jpg, png): clusters.csv, a report with "
                                              "a gallery; sub-folders, when present, are labels to score against")
    p.add_argument("folder", type=Path)
    p.add_argument("--clusters", type=int, default=None, help="number of clusters (default: number of sub-folders)")
    p.add_argument("--method", default="cce_plus", help="clustering method (default cce_plus, the paper's)")
    p.add_argument("--compare", nargs="*", default=["kmeans"], help="methods run beside it (default kmeans)")
    p.add_argument("--extractor", default="pixels", help="pixels, resnet50, dinov2 or clip (the last two: "
                   "pip install 'cce[images]')")
    p.add_argument("--out", type=Path, default=None, help="output folder (default ./FOLDER-clusters)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--options", type=_json_arg, default={}, help="method options as a JSON object, e.g. "
                   '\'{"epochs": 20}\'')
    p.add_argument("--extractor-options", type=_json_arg, default={}, help="extractor options as a JSON object, "
                   'e.g. \'{"batch_size": 128, "device": "cuda"}\'')
    p.add_argument("--no-labels", action="store_true", help="ignore the sub-folders (no accuracy)")
    p.add_argument("--top", type=int, default=8, help="images per cluster in the gallery")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_cluster_images)

    p = sub.add_parser("image-features", help="features of a folder of images with label sub-folders (the "
                                              "workflow's datasets of kind image_folder)")
    p.add_argument("folder", type=Path)
    p.add_argument("extractor")
    p.add_argument("--name", default=None, help="the dataset's name in the workflow")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--options", type=_json_arg, default={}, help="extractor options as a JSON object")
    p.add_argument("--require-labels", action="store_true", help="refuse a folder without label sub-folders")
    p.set_defaults(func=cmd_image_features)

    p = sub.add_parser("gallery", help="a run's cluster gallery (PNG), from the predictions its record names")
    p.add_argument("--record", type=Path, required=True)
    p.add_argument("--predictions", type=Path, default=None, help="a predictions file other than the record's")
    p.add_argument("--root", type=Path, default=Path("resources/data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--top", type=int, default=8)
    p.set_defaults(func=cmd_gallery)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
