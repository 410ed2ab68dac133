"""Image intake: every pixel mode becomes uint8 RGB, bad files become reasons, geometry holds."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from dapper.data.images import (
    NEUTRAL_BACKGROUND,
    ImageIntakeError,
    crop_box,
    expand_box,
    fit_box,
    letterbox,
    load_image,
    load_images,
    to_tensor,
    to_uint8,
)

GREY = NEUTRAL_BACKGROUND[0]


def _two_tone(w=40, h=20, left=(255, 0, 0), right=(0, 0, 255)):
    """RGB image, left half one colour and right half another (orientation is visible)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2 :] = right
    return a


def _save(im: Image.Image, path, **kwargs):
    im.save(path, **kwargs)
    return path


def _check_rgb(a, shape):
    assert a.dtype == np.uint8
    assert a.shape == shape
    assert a.flags.c_contiguous


def test_rgb_png_is_exact(tmp_path):
    src = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    out = load_image(_save(Image.fromarray(src), tmp_path / "rgb.png"))
    _check_rgb(out, (24, 30, 3))
    np.testing.assert_array_equal(out, src)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    g = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))
    out = load_image(_save(Image.fromarray(g, "L"), tmp_path / "gray.png"))
    _check_rgb(out, (20, 25, 3))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def test_bilevel_image(tmp_path):
    im = Image.new("1", (20, 20), 0)
    im.paste(1, (0, 0, 10, 20))
    out = load_image(_save(im, tmp_path / "bits.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 19].tolist() == [0, 0, 0]


def test_la_transparent_pixels_use_neutral_background(tmp_path):
    la = np.zeros((20, 20, 2), np.uint8)
    la[..., 0] = 200
    la[:, :10, 1] = 255  # left opaque, right fully transparent
    out = load_image(_save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    assert out[5, 2].tolist() == [200] * 3
    assert out[5, 15].tolist() == [GREY] * 3


def test_rgba_is_alpha_composited(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    expected_red = 255 * 128 / 255 + GREY * 127 / 255
    assert abs(int(out[3, 3, 0]) - expected_red) <= 1
    assert abs(int(out[3, 3, 1]) - GREY * 127 / 255) <= 1


def test_rgba_background_is_configurable(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "clear.png"), background=(1, 2, 3))
    assert out[0, 0].tolist() == [1, 2, 3]


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (20, 20), 0)
    im.putpalette([0, 255, 0] + [255, 0, 0] + [0, 0, 0] * 254)
    im.paste(1, (10, 0, 20, 20))
    path = _save(im, tmp_path / "pal.png", transparency=0)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    out = load_image(path)
    _check_rgb(out, (20, 20, 3))
    assert out[5, 2].tolist() == [GREY] * 3  # index 0 is transparent, its green must not leak
    assert out[5, 15].tolist() == [255, 0, 0]


def test_palette_without_transparency(tmp_path):
    im = Image.fromarray(_two_tone()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = load_image(_save(im, tmp_path / "pal.gif"))
    assert out[10, 2].tolist() == [255, 0, 0] and out[10, 35].tolist() == [0, 0, 255]


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (24, 24), (0, 255, 255, 0))  # no cyan, full magenta+yellow: red
    path = _save(im, tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    _check_rgb(out, (24, 24, 3))
    np.testing.assert_allclose(out[12, 12].astype(int), [255, 0, 0], atol=8)


def test_sixteen_bit_png(tmp_path):
    k = np.tile(np.arange(0, 256, 8, dtype=np.uint16), (20, 1))
    path = _save(Image.fromarray(k * 257), tmp_path / "deep.png")  # 257 * k is k at 8 bits
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    _check_rgb(out, (20, 32, 3))
    np.testing.assert_array_equal(out[..., 1], k.astype(np.uint8))


def test_sixteen_bit_big_endian_tiff(tmp_path):
    a = np.full((20, 20), 257 * 77, dtype=">u2")
    path = _save(Image.fromarray(a), tmp_path / "deep_be.tif")
    assert Image.open(path).mode == "I;16B"
    assert load_image(path)[0, 0].tolist() == [77] * 3


def test_thirty_two_bit_int_tiff(tmp_path):
    a = np.full((20, 20), 65535, dtype=np.int32)
    a[:, 10:] = 257 * 10
    path = _save(Image.fromarray(a), tmp_path / "int.tif")
    assert Image.open(path).mode == "I"
    out = load_image(path)
    assert out[0, 0].tolist() == [255] * 3 and out[0, 15].tolist() == [10] * 3
    # outside the 16-bit range: min-max normalised instead of clipped to white
    b = np.full((20, 20), -1000, dtype=np.int32)
    b[:, 10:] = 100000
    out = load_image(_save(Image.fromarray(b), tmp_path / "wide.tif"))
    assert out[0, 0, 0] == 0 and out[0, 15, 0] == 255


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((0.0, 0.5, 1.0), (0, 128, 255)),
        ((0.0, 100.0, 255.0), (0, 100, 255)),
        ((-1.0, 0.0, 1.0), (0, 128, 255)),
    ],
)
def test_float_tiff(tmp_path, values, expected):
    a = np.zeros((20, 30), np.float32)
    for i, v in enumerate(values):
        a[:, i * 10 : (i + 1) * 10] = v
    path = _save(Image.fromarray(a), tmp_path / "float.tif")
    assert Image.open(path).mode == "F"
    out = load_image(path)
    assert [int(out[0, i * 10 + 5, 0]) for i in range(3)] == list(expected)


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(Image.fromarray(_two_tone(40, 20)), tmp_path / "phone.jpg", exif=exif, quality=95)
    assert Image.open(path).size == (40, 20)
    out = load_image(path)
    _check_rgb(out, (40, 20, 3))
    # the stored left (red) half ends up on top after a clockwise quarter turn
    assert out[5, 10, 0] > 200 and out[5, 10, 2] < 60
    assert out[35, 10, 2] > 200 and out[35, 10, 0] < 60


def test_file_object_input():
    buf = io.BytesIO()
    Image.fromarray(_two_tone()).save(buf, "PNG")
    buf.seek(0)
    np.testing.assert_array_equal(load_image(buf), _two_tone())


def _truncated_jpeg(path):
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_truncated_jpeg_is_rejected(tmp_path):
    path = _truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(ImageIntakeError, match="truncated") as info:
        load_image(path)
    assert info.value.path == str(path)


def test_text_file_named_jpg_is_rejected(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture of a car\n")
    with pytest.raises(ImageIntakeError) as info:
        load_image(path)
    assert info.value.reason == "not a recognised image format"
    assert str(path) in str(info.value)


def test_tiny_image_is_rejected(tmp_path):
    path = _save(Image.new("RGB", (4, 4)), tmp_path / "tiny.png")
    with pytest.raises(ImageIntakeError, match="too small: 4x4"):
        load_image(path)
    assert load_image(path, min_side=4).shape == (4, 4, 3)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageIntakeError, match="file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageIntakeError, match="not a regular file"):
        load_image(tmp_path)


def test_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(ImageIntakeError("a.jpg", "too small")))
    assert (err.path, err.reason) == ("a.jpg", "too small")


def test_load_images_skips_with_reasons_and_keeps_going(tmp_path, caplog):
    good1 = _save(Image.fromarray(_two_tone()), tmp_path / "a.png")
    bad_text = tmp_path / "b.jpg"
    bad_text.write_text("hello")
    tiny = _save(Image.new("RGB", (4, 4)), tmp_path / "c.png")
    cut = _truncated_jpeg(tmp_path / "d.jpg")
    good2 = _save(Image.new("L", (20, 16), 9), tmp_path / "e.png")
    missing = tmp_path / "f.png"
    paths = [good1, bad_text, tiny, cut, good2, missing]
    with caplog.at_level(logging.WARNING, logger="dapper.data.images"):
        images, kept, skipped = load_images(paths)
    assert kept == [good1, good2]
    assert [i.shape for i in images] == [(20, 40, 3), (16, 20, 3)]
    reasons = dict(skipped)
    assert list(reasons) == [str(p) for p in (bad_text, tiny, cut, missing)]
    assert reasons[str(bad_text)] == "not a recognised image format"
    assert reasons[str(tiny)].startswith("too small")
    assert "truncated" in reasons[str(cut)]
    assert reasons[str(missing)] == "file not found"
    for path, reason in skipped:
        assert any(path in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_load_images_survives_unexpected_errors(tmp_path, monkeypatch):
    import dapper.data.images as images_module

    good = _save(Image.fromarray(_two_tone()), tmp_path / "a.png")
    real = images_module.load_image

    def flaky(source, **kwargs):
        if str(source).endswith("boom.png"):
            raise RuntimeError("decoder exploded")
        return real(source, **kwargs)

    monkeypatch.setattr(images_module, "load_image", flaky)
    images, kept, skipped = load_images([tmp_path / "boom.png", good])
    assert kept == [good] and len(images) == 1
    assert skipped == [(str(tmp_path / "boom.png"), "unexpected RuntimeError: decoder exploded")]


def test_letterbox_landscape_square_canvas():
    img = np.full((50, 100, 3), 200, np.uint8)
    out, mask = letterbox(img, out_size=64, fill=7)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert mask.shape == (64, 64) and mask.dtype == bool
    rows = np.flatnonzero(mask.any(axis=1))
    assert (rows[0], rows[-1]) == (16, 47) and mask[16:48].all()
    assert (out[mask] == 200).all() and (out[~mask] == 7).all()


def test_letterbox_content_box_of_rectangular_generator():
    # a 4:3 generator content area inside a square canvas: 64x48, centred
    img = np.full((50, 100, 3), 255, np.uint8)
    out, mask = letterbox(img, content_size=(64, 48), out_size=64)
    assert fit_box((100, 50), (64, 48), 64) == (0, 16, 64, 32)
    assert mask.sum() == 64 * 32
    # portrait: height bound by the content box, centred horizontally
    left, top, width, height = fit_box((30, 60), (64, 48), 64)
    assert (top, height) == (8, 48) and (left, width) == (20, 24)
    out, mask = letterbox(np.full((60, 30, 3), 255, np.uint8), content_size=(64, 48), out_size=64)
    assert mask[8:56, 20:44].all() and mask.sum() == 48 * 24
    assert (out[~mask] == 0).all()


def test_letterbox_rgb_fill_identity_and_errors():
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out, mask = letterbox(img, out_size=32)
    np.testing.assert_array_equal(out, img)
    assert mask.all()
    out, mask = letterbox(np.zeros((10, 20, 3), np.uint8), out_size=20, fill=(1, 2, 3))
    assert out[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="fit"):
        letterbox(img, content_size=(40, 20), out_size=32)
    with pytest.raises(ValueError, match="uint8"):
        letterbox(img.astype(np.float32), out_size=32)


def test_letterbox_extreme_aspect_keeps_one_pixel():
    out, mask = letterbox(np.zeros((1, 500, 3), np.uint8), out_size=16)
    assert mask.sum() == 16


def test_crop_box_margin_and_clamping():
    img = np.arange(100 * 80 * 3, dtype=np.int64).reshape(80, 100, 3).astype(np.uint8)
    assert expand_box((20, 10, 60, 50), (100, 80), margin=0.1) == (16, 6, 64, 54)
    np.testing.assert_array_equal(crop_box(img, (20, 10, 60, 50), margin=0.1), img[6:54, 16:64])
    np.testing.assert_array_equal(crop_box(img, (20, 10, 60, 50), margin=0), img[10:50, 20:60])
    # near the border the grown box is clamped, not padded
    assert expand_box((0, 0, 100, 80), (100, 80), margin=0.5) == (0, 0, 100, 80)
    assert crop_box(img, (90, 70, 120, 95), margin=0.1).shape == (80 - 67, 100 - 87, 3)
    with pytest.raises(ValueError, match="empty"):
        crop_box(img, (30, 30, 30, 40))
    with pytest.raises(ValueError, match="outside"):
        crop_box(img, (200, 200, 220, 230), margin=0)


def test_tensor_round_trip_and_range():
    torch = pytest.importorskip("torch")
    imgs = np.random.default_rng(3).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    imgs[0, 0, 0] = (0, 255, 128)
    t = to_tensor(imgs)
    assert t.shape == (2, 3, 8, 6) and t.dtype == torch.float32 and t.is_contiguous()
    assert t.min() >= -1 and t.max() <= 1
    assert t[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)
    np.testing.assert_array_equal(to_uint8(t), imgs)
    np.testing.assert_array_equal(to_tensor(list(imgs)), t)
    assert to_tensor(imgs[0]).shape == (1, 3, 8, 6)
    assert to_uint8(t[1]).shape == (8, 6, 3)
    # generator output overshoots [-1, 1]: clamp; values in between round to nearest
    odd = torch.tensor([-3.0, 2.0, 0.0, 1 / 127.5 * 0.4 - 1]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    assert to_uint8(odd.requires_grad_())[0, :, :, 0].ravel().tolist() == [0, 255, 128, 0]
    with pytest.raises(ValueError):
        to_tensor(imgs.astype(np.float32))
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(1, 4, 2, 2))
