"""Stanford Cars, the real-mode target set: 10 look-alike classes, train and test pooled.

Nothing is downloaded: the user places the dataset on disk in one of two layouts, and a missing
file is reported with its exact expected path.

Supported layouts (``root`` is what the user passes):

1. Official devkit layout, directly under ``root``::

       root/cars_train/*.jpg
       root/cars_test/*.jpg
       root/devkit/cars_meta.mat
       root/devkit/cars_train_annos.mat
       root/devkit/cars_test_annos_withlabels.mat   (or root/cars_test_annos_withlabels.mat)

2. torchvision's layout (``torchvision.datasets.StanfordCars(root)``): the same files under
   ``root/stanford_cars/``, with the labelled test annotations at
   ``root/stanford_cars/cars_test_annos_withlabels.mat``.

The devkit's own ``cars_test_annos.mat`` has no labels; the labelled test file was published
separately, hence its two usual places. Image folders that were unpacked one level too deep
(``cars_train/cars_train/``, as some mirrors ship them) are accepted too.

Annotations (``.mat`` structs read with `scipy.io.loadmat`) carry ``bbox_x1, bbox_y1, bbox_x2,
bbox_y2`` in MATLAB pixel coordinates (1-based, inclusive), ``class`` (1-based index into
``cars_meta.mat``'s ``class_names``) and ``fname``. `CarSample.bbox` converts them to 0-based
pixels with exclusive ``x2, y2``, the convention of `dapper.data.images.crop_box`.

Default classes (`DEFAULT_CLASSES`), five look-alike pairs, two models of one maker each:

- ``Acura TL Sedan 2012`` / ``Acura TSX Sedan 2012`` and ``BMW X3 SUV 2012`` /
  ``BMW X5 SUV 2007``: the pairs named in the paper (Manjunath et al., 2020).
- ``Mercedes-Benz C-Class Sedan 2012`` / ``Mercedes-Benz E-Class Sedan 2012``: two model lines of
  the same year and design language; they differ in length, headlight and tail-light shape and
  grille proportions, the kind of detail the Acura pair tests, on a second maker.
- ``Audi A5 Coupe 2012`` / ``Audi S5 Coupe 2012``: one body, two model names; only the grille
  finish, mirrors, bumpers, wheels and exhausts differ. The hardest pair, and a coupe, a body
  type the other pairs lack.
- ``Chevrolet Silverado 1500 Regular Cab 2012`` / ``Chevrolet Silverado 2500HD Regular Cab
  2012``: light-duty versus heavy-duty pickup (hood height, grille, wheels). Pickups mirror the
  toycars world's pickup pair: a body type rare in LSUN cars, so it tests projection of
  vehicles the source generator barely saw.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from tqdm.auto import tqdm

from dapper.data.images import (
    DEFAULT_MIN_SIDE,
    ImageIntakeError,
    expand_box,
    fit_box,
    letterbox,
    load_image,
)

__all__ = [
    "DEFAULT_CLASSES",
    "CarPool",
    "CarSample",
    "StanfordCarsFiles",
    "find_files",
    "list_samples",
    "load_pool",
    "read_annotations",
    "read_class_names",
    "resolve_classes",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASSES: tuple[str, ...] = (
    "Acura TL Sedan 2012",
    "Acura TSX Sedan 2012",
    "BMW X3 SUV 2012",
    "BMW X5 SUV 2007",
    "Mercedes-Benz C-Class Sedan 2012",
    "Mercedes-Benz E-Class Sedan 2012",
    "Audi A5 Coupe 2012",
    "Audi S5 Coupe 2012",
    "Chevrolet Silverado 1500 Regular Cab 2012",
    "Chevrolet Silverado 2500HD Regular Cab 2012",
)

SPLITS = ("train", "test")


@dataclass(frozen=True)
class StanfordCarsFiles:
    """Resolved paths of one Stanford Cars copy; ``layout`` is ``"devkit"`` or ``"torchvision"``."""

    base: Path
    layout: str
    meta: Path
    annotations: dict[str, Path]  # split -> .mat
    image_dirs: dict[str, Path]  # split -> folder of .jpg


@dataclass(frozen=True)
class CarSample:
    """One annotated photo. ``bbox = (x1, y1, x2, y2)``: 0-based pixels, ``x2, y2`` exclusive.
    ``label`` indexes the chosen classes; ``split`` is the official split it came from."""

    path: Path
    label: int
    class_name: str
    bbox: tuple[int, int, int, int]
    split: str


@dataclass
class CarPool:
    """Train and test pooled, ready for 5-fold cross validation.

    ``images``: ``uint8 [N, size, size, 3]`` RGB, bbox crop with margin letterboxed into the
    generator's content box. ``labels``: ``int64 [N]`` in ``[0, len(class_names))``.
    ``content_masks``: ``bool [N, size, size]``, True on picture (False on letterbox padding).
    ``bbox_masks``: ``bool [N, size, size]``, True inside the annotated car box (a subset of the
    content), for judging where saliency falls. ``samples[i]`` describes ``images[i]``;
    ``skipped`` lists ``(path, reason)`` for files that could not be used.
    """

    images: np.ndarray
    labels: np.ndarray
    content_masks: np.ndarray
    bbox_masks: np.ndarray
    samples: list[CarSample]
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


def _image_dir(base: Path, split: str) -> Path:
    folder = base / f"cars_{split}"
    nested = folder / f"cars_{split}"
    return nested if nested.is_dir() else folder


def _candidates(base: Path, layout: str, splits: Sequence[str]) -> tuple[StanfordCarsFiles, list[tuple[Path, ...]]]:
    """The files of one layout under ``base``, and the missing ones (each entry lists the
    alternative places one file may sit)."""
    devkit = base / "devkit"
    meta = devkit / "cars_meta.mat"
    missing: list[tuple[Path, ...]] = [] if meta.is_file() else [(meta,)]
    annotations: dict[str, Path] = {}
    image_dirs: dict[str, Path] = {}
    for split in splits:
        image_dirs[split] = _image_dir(base, split)
        if not image_dirs[split].is_dir():
            missing.append((image_dirs[split],))
        if split == "train":
            options: tuple[Path, ...] = (devkit / "cars_train_annos.mat",)
        else:
            # torchvision reads the labelled test file from the base folder; devkit users tend
            # to drop it next to the other annotations. Either place works in both layouts.
            places = (devkit, base) if layout == "devkit" else (base, devkit)
            options = tuple(p / "cars_test_annos_withlabels.mat" for p in places)
        found = next((p for p in options if p.is_file()), None)
        annotations[split] = found or options[0]
        if found is None:
            missing.append(options)
    return StanfordCarsFiles(base, layout, meta, annotations, image_dirs), missing


def find_files(root: str | Path, splits: Sequence[str] = SPLITS) -> StanfordCarsFiles:
    """Locate Stanford Cars under ``root`` in either supported layout.

    Raises FileNotFoundError naming every expected path that is missing (for the layout that
    came closest) and describing both layouts.
    """
    root = Path(root).expanduser()
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {tuple(splits)}")
    options = [
        _candidates(root, "devkit", splits),
        _candidates(root / "stanford_cars", "torchvision", splits),
    ]
    for files, missing in options:
        if not missing:
            return files
    # Report the layout the user most likely meant: the one with the fewest missing pieces.
    files, missing = min(options, key=lambda fm: len(fm[1]))
    if not root.exists():
        head = f"Stanford Cars root {root} does not exist; expected ({files.layout} layout):"
    else:
        head = f"Stanford Cars files missing under {root} ({files.layout} layout):"
    lines = "\n".join("  " + " or ".join(str(p) for p in alternatives) for alternatives in missing)
    hint = ""
    if any(p.name == "cars_test_annos_withlabels.mat" for alts in missing for p in alts):
        hint = (
            "\nThe devkit's cars_test_annos.mat has no labels: the labelled test annotations are"
            " cars_test_annos_withlabels.mat (or pass splits=('train',) to use train only)."
        )
    raise FileNotFoundError(f"{head}\n{lines}{hint}\n{_layout_help(root)}")


def _layout_help(root: Path) -> str:
    tv = root / "stanford_cars"
    return (
        "Stanford Cars is never downloaded by dapper; place it in one of these layouts:\n"
        f"  official devkit: {root}/cars_train/, {root}/cars_test/, {root}/devkit/cars_meta.mat,\n"
        f"    {root}/devkit/cars_train_annos.mat and {root}/devkit/cars_test_annos_withlabels.mat\n"
        f"    (or {root}/cars_test_annos_withlabels.mat)\n"
        f"  torchvision: the same files under {tv}/, the labelled test annotations at\n"
        f"    {tv}/cars_test_annos_withlabels.mat"
    )


def _loadmat(path: Path) -> dict:
    try:
        return loadmat(str(path), squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError/TypeError/etc. for non-.mat bytes
        raise ValueError(f"cannot read {path} as a MATLAB .mat file: {exc}") from exc


def _scalar(value):
    """Unwrap the 0-d and 1-element arrays loadmat leaves around struct fields."""
    while isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected a scalar field, got array of shape {value.shape}")
        value = value.reshape(-1)[0]
    return value.item() if isinstance(value, np.generic) else value


def read_class_names(meta_path: str | Path) -> list[str]:
    """The 196 class names of ``cars_meta.mat`` in label order (label ``k`` is ``names[k - 1]``)."""
    mat = _loadmat(Path(meta_path))
    if "class_names" not in mat:
        raise ValueError(f"{meta_path} has no 'class_names' variable")
    names = np.atleast_1d(mat["class_names"]).reshape(-1)
    return [str(_scalar(n)).strip() for n in names]


def read_annotations(annos_path: str | Path) -> list[dict]:
    """Rows of an annotations ``.mat``: dicts with ``fname`` (str), ``class`` (1-based int) and
    ``bbox_x1, bbox_y1, bbox_x2, bbox_y2`` (1-based inclusive pixel coordinates)."""
    annos_path = Path(annos_path)
    mat = _loadmat(annos_path)
    if "annotations" not in mat:
        raise ValueError(f"{annos_path} has no 'annotations' variable")
    table = np.atleast_1d(mat["annotations"]).reshape(-1)
    names = table.dtype.names or ()
    needed = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    absent = [n for n in needed if n not in names]
    if absent:
        extra = " (this looks like the unlabelled cars_test_annos.mat)" if "class" in absent else ""
        raise ValueError(f"{annos_path} annotations lack fields {absent}{extra}")
    rows = []
    for record in table:
        row = {n: _scalar(record[n]) for n in needed}
        row["fname"] = str(row["fname"]).strip()
        row["class"] = int(row["class"])
        rows.append(row)
    return rows


def _normalise(name: str) -> str:
    return " ".join(name.split()).casefold()


def resolve_classes(requested: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """Map class name strings to 0-based indices into ``class_names`` (exact match, ignoring case
    and repeated spaces). Unknown names raise ValueError listing close matches."""
    if isinstance(requested, str):
        raise TypeError("classes must be a sequence of class names, not one string")
    lookup = {_normalise(n): i for i, n in enumerate(class_names)}
    indices: list[int] = []
    problems: list[str] = []
    for name in requested:
        if not isinstance(name, str):
            raise TypeError(f"classes are chosen by name string, got {name!r}")
        key = _normalise(name)
        if key in lookup:
            if lookup[key] in indices:
                problems.append(f"{name!r} is requested twice")
            indices.append(lookup[key])
            continue
        close = difflib.get_close_matches(key, list(lookup), n=5, cutoff=0.6)
        originals = [class_names[lookup[c]] for c in close]
        hint = f"; close matches: {', '.join(repr(o) for o in originals)}" if originals else ""
        problems.append(f"unknown Stanford Cars class {name!r}{hint}")
    if problems:
        raise ValueError("\n".join(problems))
    if not indices:
        raise ValueError("no classes requested")
    return indices


def list_samples(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    splits: Sequence[str] = SPLITS,
) -> tuple[list[CarSample], list[str]]:
    """Annotated samples of the chosen classes, train then test, in file order.

    Returns ``(samples, class_names)`` where ``class_names`` are the chosen classes as spelled
    in ``cars_meta.mat`` and ``samples[i].label`` indexes them. Reads annotations only.
    """
    files = find_files(root, splits)
    all_names = read_class_names(files.meta)
    chosen = resolve_classes(classes, all_names)
    label_of = {meta_index + 1: label for label, meta_index in enumerate(chosen)}  # 1-based class
    samples: list[CarSample] = []
    for split in splits:
        for row in read_annotations(files.annotations[split]):
            label = label_of.get(row["class"])
            if label is None:
                continue
            # MATLAB 1-based inclusive -> 0-based, exclusive end.
            x1, y1 = int(row["bbox_x1"]) - 1, int(row["bbox_y1"]) - 1
            x2, y2 = int(row["bbox_x2"]), int(row["bbox_y2"])
            samples.append(
                CarSample(
                    path=files.image_dirs[split] / Path(row["fname"]).name,
                    label=label,
                    class_name=all_names[chosen[label]],
                    bbox=(x1, y1, x2, y2),
                    split=split,
                )
            )
    return samples, [all_names[i] for i in chosen]


def _bbox_mask(
    bbox: tuple[int, int, int, int],
    crop: tuple[int, int, int, int],
    placement: tuple[int, int, int, int],
    size: int,
) -> np.ndarray:
    """Where the annotated box lands on the letterboxed canvas."""
    cx1, cy1, cx2, cy2 = crop
    left, top, width, height = placement
    sx, sy = width / (cx2 - cx1), height / (cy2 - cy1)
    bx1, by1, bx2, by2 = bbox
    x1 = left + (max(bx1, cx1) - cx1) * sx
    x2 = left + (min(bx2, cx2) - cx1) * sx
    y1 = top + (max(by1, cy1) - cy1) * sy
    y2 = top + (min(by2, cy2) - cy1) * sy
    mask = np.zeros((size, size), dtype=bool)
    # Pixel centres inside the mapped box; at least one pixel so tiny boxes are not lost.
    c0, c1 = int(np.floor(x1 + 0.5)), max(int(np.floor(x1 + 0.5)) + 1, int(np.floor(x2 + 0.5)))
    r0, r1 = int(np.floor(y1 + 0.5)), max(int(np.floor(y1 + 0.5)) + 1, int(np.floor(y2 + 0.5)))
    mask[max(r0, top) : min(r1, top + height), max(c0, left) : min(c1, left + width)] = True
    return mask


def load_pool(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    size: int = 64,
    content_size: tuple[int, int] | None = None,
    margin: float = 0.1,
    *,
    splits: Sequence[str] = SPLITS,
    min_side: int = DEFAULT_MIN_SIDE,
    fill: int | tuple[int, int, int] = 0,
    progress: bool = True,
) -> CarPool:
    """Load the chosen classes of Stanford Cars, train and test pooled, as generator-ready crops.

    Each photo is cropped to its bounding box grown by ``margin`` (fraction of box size per
    side, clamped to the photo) and letterboxed into ``content_size = (w, h)`` centred on a
    ``size x size`` canvas (``None``: the whole canvas), padding with ``fill``. Files that cannot
    be used (missing, corrupt, tiny, box outside the photo) are skipped, logged and listed in
    ``CarPool.skipped``; the batch always continues. See `CarPool` for shapes.
    """
    samples, class_names = list_samples(root, classes, splits)
    images, content_masks, bbox_masks, kept = [], [], [], []
    skipped: list[tuple[str, str]] = []
    iterator = samples
    if progress:
        iterator = tqdm(samples, desc="Stanford Cars", unit="img")
    for sample in iterator:
        try:
            photo = load_image(sample.path, min_side=min_side)
            h, w = photo.shape[:2]
            crop = expand_box(sample.bbox, (w, h), margin)
        except ImageIntakeError as exc:
            reason = exc.reason
        except ValueError as exc:  # bounding box empty or off the photo
            reason = str(exc)
        else:
            x1, y1, x2, y2 = crop
            out, content = letterbox(photo[y1:y2, x1:x2], content_size, size, fill)
            placement = fit_box((x2 - x1, y2 - y1), content_size, size)
            images.append(out)
            content_masks.append(content)
            bbox_masks.append(_bbox_mask(sample.bbox, crop, placement, size) & content)
            kept.append(sample)
            continue
        logger.warning("skipping %s: %s", sample.path, reason)
        skipped.append((str(sample.path), reason))
    if skipped:
        logger.warning("Stanford Cars: %d of %d images skipped", len(skipped), len(samples))
    n = len(kept)
    return CarPool(
        images=np.stack(images) if n else np.zeros((0, size, size, 3), np.uint8),
        labels=np.array([s.label for s in kept], dtype=np.int64),
        content_masks=np.stack(content_masks) if n else np.zeros((0, size, size), bool),
        bbox_masks=np.stack(bbox_masks) if n else np.zeros((0, size, size), bool),
        samples=kept,
        class_names=class_names,
        skipped=skipped,
    )
