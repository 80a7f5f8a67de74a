"""Decoding images: the torch Dataset that feeds loaders, and ``check_data`` that finds unreadable files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from torchvision.transforms import v2

from .datasets import Record, build_dataset


class CorruptImageError(OSError):
    """An image file that does not decode; the message names it and the two ways on."""

    def __init__(self, message: str) -> None:
        # A DataLoader worker's error comes back as "Caught ... Original Traceback ...": keep its last line.
        if message.startswith("Caught ") and "Original Traceback" in message:
            message = message.strip().splitlines()[-1].split("CorruptImageError: ", 1)[-1]
        super().__init__(message)


def load_image(path: str) -> Image.Image:
    """Decode an image as RGB; any failure becomes a CorruptImageError that names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises many types (OSError, SyntaxError, ValueError, DecompressionBombError)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CorruptImageError(
            f"cannot decode image {path} ({reason}); `reidlab check-data NAME ROOT` lists every unreadable file, "
            "and data.skip_corrupt=true skips them"
        ) from error


def collate_skipping(items: Sequence[dict]) -> dict:
    """DataLoader collate for ReIDImageDataset: the readable items batched as usual, plus ``skipped``, the
    paths of the items that were skipped as unreadable (``skip_corrupt=True``)."""
    kept = [item for item in items if "image" in item]
    skipped = [item["skipped"] for item in items if "skipped" in item]
    if not kept:
        raise CorruptImageError(f"every image of a batch is unreadable ({', '.join(skipped[:3])}, ...); "
                                "`reidlab check-data NAME ROOT` lists them")
    batch = default_collate(kept)
    batch["skipped"] = skipped
    return batch


class ReIDImageDataset(Dataset):
    """Records -> dicts ``image, pid, camid, sceneid, index, path`` for a DataLoader.

    ``transform`` maps a PIL image to a float Tensor[3, H, W] (see ``build_transforms``); without one the
    image is only converted to a float tensor in [0, 1]. ``cache_images=True`` decodes every image once, up
    front (threads), and keeps it in memory (H x W x 3 bytes each; Market-1501 train: ~320 MB): on a CPU
    machine JPEG decoding is about a third of the loader's work per image, every epoch. DataLoader workers
    started afterwards share the decoded images.

    An unreadable image raises CorruptImageError; with ``skip_corrupt=True`` its item is ``{"skipped": path}``
    instead, which ``collate_skipping`` (the loaders' collate) leaves out of the batch and lists.
    """

    def __init__(self, records: Sequence[Record], transform: Callable | None = None, cache_images: bool = False,
                 skip_corrupt: bool = False) -> None:
        self.records = list(records)
        if transform is None:
            transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.cached: list[Image.Image | None] | None = None
        if cache_images:
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
                self.cached = list(pool.map(self._decode, (record.path for record in self.records)))

    def _decode(self, path: str) -> Image.Image | None:
        try:
            return load_image(path)
        except CorruptImageError:
            if self.skip_corrupt:
                return None
            raise

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = self.cached[index] if self.cached is not None else self._decode(record.path)
        if image is None:
            return {"skipped": record.path}
        image = self.transform(image)
        return {
            "image": image,
            "pid": record.pid,
            "camid": record.camid,
            "sceneid": record.sceneid,
            "index": index,
            "path": record.path,
        }


def _decode_error(path: str) -> str | None:
    try:
        load_image(path)
    except OSError as error:
        return str(error.__cause__ or error)
    return None


def check_data(name: str, root: str | os.PathLike, num_workers: int = 2, **dataset_kwargs) -> list[tuple[str, str]]:
    """Decode every image of a dataset (all splits); return ``(path, error)`` for each one that fails."""
    dataset = build_dataset(name, root, **dataset_kwargs)
    paths = list(dict.fromkeys(r.path for r in dataset.train + dataset.query + dataset.gallery))
    # PIL releases the GIL while decoding, so threads use several cores without pickling paths around.
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        errors = list(pool.map(_decode_error, paths))
    return [(path, error) for path, error in zip(paths, errors) if error is not None]
