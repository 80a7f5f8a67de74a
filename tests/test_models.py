"""reidlab.models: registry, output contract, MGN / ViT dimensions, IBN-a, heads, local weights, SIE, JPM.

CPU, offline, random weights only; tiny inputs except where the paper geometry is the point.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from reidlab.models import SceneAdversary, grad_reverse

from reidlab.models import (
    IBN,
    MGN,
    CosineClassifier,
    EmbeddingHead,
    GeneralizedMeanPooling,
    TransReID,
    build_model,
    jigsaw_rearrange,
    list_models,
    load_pretrained,
    model_info,
)

NUM_CLASSES = 5
REQUIRED = {"resnet50", "resnet50_ibn_a", "mgn_resnet50_ibn_a", "vit_base_transreid",
            "resnet18_ibn_a", "mgn_resnet18_ibn_a", "vit_tiny_transreid"}
# published parameter counts (timm): ResNet-50 25,557,032 with its 1000-way fc, ViT-B/16 86,567,656 with its head
TIMM_RESNET50_BODY = 25_557_032 - (2048 * 1000 + 1000)
TIMM_VIT_B16_BODY = 86_567_656 - (768 * 1000 + 1000)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _small_kwargs(name: str) -> tuple[dict, tuple[int, int]]:
    if name.startswith("vit"):
        return {"img_size": (64, 32), "num_cameras": 3, "jpm": True}, (64, 32)
    if name.startswith("mgn"):
        return {}, (96, 32)  # 6 rows in the last map: 2 and 3 stripes
    return {}, (64, 32)


# ---------------------------------------------------------------- registry and the output contract


def test_registry_names_and_unknown_name():
    assert REQUIRED <= set(list_models())
    assert list_models("mgn_*") == sorted(n for n in list_models() if n.startswith("mgn_"))
    with pytest.raises(ValueError, match="unknown model 'resnet51'.*resnet50_ibn_a"):
        build_model("resnet51", NUM_CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", -1)
    # what a model needs from a run is declared at registration, not guessed from its name
    assert {n for n in list_models() if model_info(n).input_size_kwarg == "img_size"} == set(list_models("vit_*"))
    with pytest.raises(ValueError, match="unknown model 'resnet51'"):
        model_info("resnet51")


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_embeds(name):
    torch.set_num_threads(1)
    kwargs, size = _small_kwargs(name)
    model = build_model(name, NUM_CLASSES, **kwargs)
    images = torch.randn(2, 3, *size)
    camids = torch.tensor([0, 2]) if model.uses_camids else None
    labels = torch.tensor([1, 3])

    out = model(images, camids=camids)
    assert set(out) == {"features", "logits", "global_feature", "feat"}
    assert len(out["features"]) == len(model.feature_weights) and len(out["logits"]) == len(model.logit_weights)
    assert all(f.shape[0] == 2 and f.dim() == 2 for f in out["features"])
    assert all(t.shape == (2, NUM_CLASSES) for t in out["logits"])
    assert out["global_feature"].shape == (2, model.global_feature_dim)
    assert out["feat"].shape == (2, model.feature_dim)
    loss = sum(F.cross_entropy(t, labels) for t in out["logits"]) + sum(f.square().mean() for f in out["features"])
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters outside the graph (DDP would need find_unused_parameters): {no_grad[:5]}"
    assert model.classifier_weight().shape[0] == NUM_CLASSES
    # backbone_parameters: everything pretrained-shaped, never a classifier (what freezing leaves trainable)
    backbone = {id(p) for p in model.backbone_parameters()}
    heads = [n for n, p in model.named_parameters() if id(p) not in backbone]
    assert backbone and heads and all(n.split(".")[0] in model.head_modules for n in heads)
    assert id(model.classifier_weight()) not in backbone

    model.eval()
    with torch.no_grad():
        feat = model(images, camids=camids)
        again = model(images, camids=camids)
    assert isinstance(feat, torch.Tensor) and feat.shape == (2, model.feature_dim)
    assert torch.isfinite(feat).all() and torch.equal(feat, again)


def test_plain_model_groups_and_dims():
    model = build_model("resnet50_ibn_a", NUM_CLASSES)
    out = model(torch.randn(2, 3, 64, 32))
    assert [f.shape[1] for f in out["features"]] == [2048] and len(out["logits"]) == 1
    assert model.feature_dim == 2048 and model.uses_camids is False
    # bag-of-tricks BNNeck: metric feature before the BN, retrieval after it
    assert torch.equal(out["features"][0], out["global_feature"])
    assert not torch.equal(out["feat"], out["global_feature"])
    assert model.head.bnneck.bias.requires_grad is False and model.head.classifier.bias is None


def test_no_classifier_and_channels_last_and_autocast():
    model = build_model("resnet18_ibn_a", 0)
    out = model(torch.randn(2, 3, 64, 32))
    assert out["logits"] == [] and len(out["features"]) == 1
    with pytest.raises(ValueError, match="num_classes=0"):
        model.classifier_weight()
    model.eval()
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        reference = model(images)
        model_cl = model.to(memory_format=torch.channels_last)
        assert torch.allclose(model_cl(images.to(memory_format=torch.channels_last)), reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images)
    assert low.shape == reference.shape and torch.isfinite(low).all()


# ---------------------------------------------------------------- MGN


def test_mgn_paper_dimensions_and_feature_order():
    model = build_model("mgn_resnet50_ibn_a", NUM_CLASSES)
    assert isinstance(model, MGN)
    images = torch.randn(2, 3, 96, 32)
    out = model(images)
    assert [f.shape[1] for f in out["features"]] == [256, 256, 256, 512, 768]
    assert len(out["logits"]) == 8 and model.feature_dim == 2048 and out["feat"].shape == (2, 2048)
    assert model.feature_weights == (0.2,) * 5 and model.logit_weights == (0.125,) * 8
    assert model.classifier_weight().shape == (NUM_CLASSES, 256)
    for head in model.heads.values():
        assert isinstance(head.pool, GeneralizedMeanPooling) and head.out_features == 256

    # reference: the three branch maps, stripes cut by hand, heads applied one by one (fast-reid order)
    model.eval()
    with torch.no_grad():
        shared = model.stem(images)
        b1, b2, b3 = model.b1(shared), model.b2(shared), model.b3(shared)
        rows2, rows3 = b2.shape[2] // 2, b3.shape[2] // 3
        pieces = {
            "b1": b1, "b2": b2, "b3": b3,
            "b21": b2[:, :, :rows2], "b22": b2[:, :, rows2:],
            "b31": b3[:, :, :rows3], "b32": b3[:, :, rows3:2 * rows3], "b33": b3[:, :, 2 * rows3:],
        }
        expected = torch.cat([model.heads[k](pieces[k]).inference
                              for k in ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")], dim=1)
        assert torch.allclose(model(images), expected, atol=1e-5)
    # fast-reid/AdaSP run every branch at stride 1; the MGN paper's global branch keeps stride 2
    assert b1.shape[-2:] == b2.shape[-2:] == (6, 2)
    paper = build_model("mgn_resnet18_ibn_a", NUM_CLASSES, global_last_stride=2).eval()
    with torch.no_grad():
        shared = paper.stem(images)
        assert paper.b1(shared).shape[-2:] == (3, 1) and paper.b2(shared).shape[-2:] == (6, 2)


def test_mgn_too_short_map_is_a_clear_error():
    model = build_model("mgn_resnet18_ibn_a", NUM_CLASSES)
    with pytest.raises(ValueError, match="height 4 into 3 stripes"):
        model(torch.randn(2, 3, 64, 32))


# ---------------------------------------------------------------- ResNet-IBN-a, last stride, parameter counts


def _ibn_reference(x: torch.Tensor, ibn: IBN) -> torch.Tensor:
    """Explicit float64 loops: instance norm on channels [0, half), batch norm (batch statistics) on the rest."""
    x = x.double()
    out = torch.empty_like(x)
    batch, channels = x.shape[:2]
    for c in range(channels):
        if c < ibn.half:
            weight, bias, eps = ibn.IN.weight[c], ibn.IN.bias[c], ibn.IN.eps
            for n in range(batch):
                values = x[n, c]
                mean, var = values.mean(), ((values - values.mean()) ** 2).mean()
                out[n, c] = (values - mean) / torch.sqrt(var + eps) * weight + bias
        else:
            k = c - ibn.half
            weight, bias, eps = ibn.BN.weight[k], ibn.BN.bias[k], ibn.BN.eps
            values = x[:, c]
            mean, var = values.mean(), ((values - values.mean()) ** 2).mean()
            out[:, c] = (values - mean) / torch.sqrt(var + eps) * weight + bias
    return out


def test_ibn_a_structure_and_math():
    model = build_model("resnet50_ibn_a", NUM_CLASSES)
    body = model.backbone
    for stage, planes in ((1, 64), (2, 128), (3, 256)):
        for block in getattr(body, f"layer{stage}"):
            assert isinstance(block.bn1, IBN)
            assert block.bn1.IN.num_features == planes // 2 and block.bn1.BN.num_features == planes // 2
            assert block.bn1.IN.affine and not isinstance(block.bn2, IBN)
    assert not any(isinstance(m, (IBN, nn.InstanceNorm2d)) for m in body.layer4.modules())
    assert isinstance(body.bn1, nn.BatchNorm2d)
    plain = build_model("resnet50", NUM_CLASSES).backbone
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in plain.modules())

    ibn = IBN(6)
    with torch.no_grad():
        for p in ibn.parameters():
            p.uniform_(0.5, 1.5)
    x = torch.randn(3, 6, 4, 5)
    assert torch.allclose(ibn(x).double(), _ibn_reference(x, ibn), atol=1e-5)


def test_last_stride():
    images = torch.randn(1, 3, 64, 32)
    reid = build_model("resnet18", NUM_CLASSES).eval()
    imagenet = build_model("resnet18", NUM_CLASSES, last_stride=2).eval()
    with torch.no_grad():
        assert reid.backbone.forward_features(images).shape[-2:] == (4, 2)
        assert imagenet.backbone.forward_features(images).shape[-2:] == (2, 1)


def test_parameter_counts_match_timm_bodies():
    rows = []
    r50 = timm.create_model("resnet50", pretrained=False, num_classes=0)
    assert _num_params(r50) == TIMM_RESNET50_BODY
    for name in ("resnet50", "resnet50_ibn_a"):
        model = build_model(name, NUM_CLASSES)
        body = _num_params(model.backbone)
        # IBN-a swaps BN(c) for IN(c/2) + BN(c/2): the same number of affine parameters
        assert body == TIMM_RESNET50_BODY
        head = 2 * 2048 + 2048 * NUM_CLASSES  # BNNeck (weight + frozen bias) and bias-free classifier
        assert _num_params(model) == body + head
        rows.append((name, body, _num_params(model)))

    vit = build_model("vit_base_transreid", NUM_CLASSES, img_size=(256, 128), num_cameras=15, jpm=True)
    body = _num_params(vit.backbone)
    # same weights as timm's ViT-B/16 body except the position table: 1 + 21 x 10 entries instead of 1 + 14 x 14
    assert body == TIMM_VIT_B16_BODY + (211 - 197) * 768
    block = _num_params(vit.backbone.blocks[-1]) + _num_params(vit.backbone.norm)
    heads = 5 * (2 * 768 + 768 * NUM_CLASSES)
    assert _num_params(vit) == body + 15 * 768 + block + heads  # + SIE table + JPM local branch + 5 heads
    rows.append(("vit_base_transreid", body, _num_params(vit)))
    print("\nparameters (timm body ResNet-50 %d, ViT-B/16 %d)" % (TIMM_RESNET50_BODY, TIMM_VIT_B16_BODY))
    for name, body, total in rows:
        print(f"  {name:20s} body {body:>11,d}  model {total:>11,d}")


# ---------------------------------------------------------------- heads


def test_gem_matches_brute_force():
    x = torch.rand(2, 3, 4, 5) + 0.1
    gem = GeneralizedMeanPooling(3.0)
    expected = torch.tensor([[(x[n, c].double() ** 3).mean() ** (1 / 3) for c in range(3)] for n in range(2)])
    assert torch.allclose(gem(x).double(), expected, atol=1e-6)
    gem(x).sum().backward()
    assert gem.p.grad is not None
    fixed = GeneralizedMeanPooling(3.0, learnable=False)
    assert not list(fixed.parameters()) and torch.allclose(fixed(x), gem(x))
    assert torch.allclose(GeneralizedMeanPooling(1.0)(x), x.mean(dim=(2, 3)), atol=1e-6)


def test_embedding_head_feature_choices_and_reduction():
    head = EmbeddingHead(8, 4, pool="max", embedding_dim=6, metric_feature="after", inference_feature="before")
    x = torch.randn(5, 8, 3, 2)
    out = head(x)
    before = x.amax(dim=(2, 3)) @ head.reduction.weight.T
    after = (before - before.mean(0)) / torch.sqrt(before.var(0, unbiased=False) + head.bnneck.eps)
    assert torch.allclose(out.global_feature, before, atol=1e-5)
    assert torch.allclose(out.metric, after, atol=1e-4) and torch.allclose(out.inference, before, atol=1e-5)
    assert torch.allclose(out.logits, after @ head.classifier.weight.T, atol=1e-5)
    assert head.eval()(x).logits is None
    with pytest.raises(ValueError, match="metric_feature"):
        EmbeddingHead(8, 4, metric_feature="middle")
    with pytest.raises(ValueError, match="unknown pooling"):
        EmbeddingHead(8, 4, pool="median")


def test_cosine_classifiers_against_formulas():
    x, labels = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    for kind, margin in (("cosine", 0.0), ("cosface", 0.35), ("arcface", 0.5)):
        classifier = CosineClassifier(6, 3, scale=16.0, margin=margin, margin_type="arcface" if kind == "arcface" else "cosface")
        logits = classifier(x, labels).detach()
        w = classifier.weight.detach().double()
        for i in range(4):
            for j in range(3):
                cos = float(x[i].double() @ w[j] / (x[i].double().norm() * w[j].norm()))
                if j == labels[i] and kind == "cosface":
                    cos -= margin
                elif j == labels[i] and kind == "arcface":
                    theta = math.acos(cos)
                    cos = math.cos(theta + margin) if theta + margin < math.pi else cos - math.sin(math.pi - margin) * margin
                assert abs(float(logits[i, j]) - 16.0 * cos) < 1e-4
        assert torch.allclose(classifier.eval()(x, labels), classifier(x), atol=0)  # no margin at evaluation


def test_cosine_classifier_stays_float32_under_autocast():
    classifier = CosineClassifier(6, 3, scale=16.0, margin=0.35)
    x, labels = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    want = classifier(x, labels)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = classifier(x, labels)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-5)


# ---------------------------------------------------------------- TransReID ViT


def test_vit_token_grid_at_paper_sizes():
    for size, grid in (((256, 128), (21, 10)), ((384, 128), (31, 10))):
        model = build_model("vit_base_transreid", NUM_CLASSES, img_size=size)
        embed = model.backbone.patch_embed
        assert embed.grid_size == grid and embed.proj.stride == (12, 12) and embed.proj.kernel_size == (16, 16)
        assert model.backbone.pos_embed.shape == (1, 1 + grid[0] * grid[1], 768)
        with torch.no_grad():
            assert embed(torch.randn(1, 3, *size)).shape == (1, grid[0] * grid[1], 768)
    model.eval()  # 384 x 128, one full pass: 768-d global feature
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 128)).shape == (1, 768)
    with pytest.raises(ValueError, match=r"built for img_size=\(384, 128\)"):
        model(torch.randn(1, 3, 256, 128))
    with pytest.raises(ValueError, match="smaller than the patch size"):
        build_model("vit_tiny_transreid", NUM_CLASSES, img_size=(8, 8))


def test_sie_uses_camera_ids():
    model = build_model("vit_tiny_transreid", NUM_CLASSES, img_size=(64, 32), num_cameras=4).eval()
    assert model.uses_camids and model.sie_embed.shape == (4, 1, 192) and model.sie_coef == 3.0
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        a = model(images, camids=torch.tensor([0, 1]))
        b = model(images, camids=torch.tensor([3, 1]))
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    # randomly initialised: trained with the heads, never frozen with the pretrained body
    assert all(p is not model.sie_embed for p in model.backbone_parameters())
    with pytest.raises(ValueError, match="camids="):
        model(images)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model(images, camids=torch.tensor([0, 4]))
    plain = build_model("vit_tiny_transreid", NUM_CLASSES, img_size=(64, 32)).eval()
    assert not plain.uses_camids
    with torch.no_grad():
        assert torch.equal(plain(images), plain(images, camids=torch.tensor([0, 1])))


def test_jigsaw_rearrange_matches_index_reference():
    for num_patches, shift, groups in ((8, 2, 2), (9, 5, 2), (10, 3, 5), (7, 1, 3)):
        tokens = torch.arange(1 + num_patches, dtype=torch.float64).reshape(1, -1, 1)
        shifted = list(range(shift, 1 + num_patches)) + list(range(1, shift))
        pad = shifted[-2]  # TransReID pads with the second-to-last token (repeated if several are needed)
        while len(shifted) % groups:
            shifted.append(pad)
        run = len(shifted) // groups
        expected = [shifted[g * run + j] for j in range(run) for g in range(groups)]
        assert jigsaw_rearrange(tokens, shift, groups).flatten().tolist() == expected
    with pytest.raises(ValueError, match="shift"):
        jigsaw_rearrange(torch.zeros(1, 5, 1), 0, 2)


def test_jpm_matches_per_group_loop():
    model = build_model("vit_tiny_transreid", NUM_CLASSES, img_size=(64, 32), jpm=True).eval()
    assert isinstance(model, TransReID) and model.feature_dim == 5 * 192
    assert model.feature_weights == (0.5, 0.125, 0.125, 0.125, 0.125)
    images = torch.randn(2, 3, 64, 32)
    vit = model.backbone
    with torch.no_grad():
        x = vit.blocks[:-1](model._embed(images, None))
        global_feat = vit.norm(vit.blocks[-1](x))[:, 0]
        patches = jigsaw_rearrange(x, model.shift_num, model.shuffle_groups)
        length = (x.shape[1] - 1) // 4
        locals_ = [model.local_branch(torch.cat([x[:, :1], patches[:, i * length:(i + 1) * length]], dim=1))[:, 0]
                   for i in range(4)]
        expected = torch.cat([global_feat] + [f / 4 for f in locals_], dim=1)  # TransReID: before-BN, locals / 4
        assert torch.allclose(model(images), expected, atol=1e-5)
    # the local branch starts as a copy of the last block
    assert torch.equal(model.local_branch[0].mlp.fc1.weight, vit.blocks[-1].mlp.fc1.weight)


# ---------------------------------------------------------------- local pretrained weights


def test_pretrained_resnet_from_timm_state_dict(tmp_path):
    source = timm.create_model("resnet50", pretrained=False)
    with torch.no_grad():
        for buffer in source.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)  # make running stats distinguishable from the defaults
    path = tmp_path / "resnet50.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet50", NUM_CLASSES, pretrained=str(path))
    target = model.backbone.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("fc."):
            assert key not in target
        else:
            assert torch.equal(target[key], value), key

    # MGN: stem from layer3[0] down, every branch gets its own copy of layer3[1:] and layer4
    mgn = build_model("mgn_resnet50", NUM_CLASSES, pretrained=path)
    reference = source.state_dict()
    assert torch.equal(mgn.stem[6].conv2.weight, reference["layer3.0.conv2.weight"])
    for branch in (mgn.b1, mgn.b2, mgn.b3):
        assert torch.equal(branch[0][0].conv1.weight, reference["layer3.1.conv1.weight"])
        assert torch.equal(branch[1][2].bn3.running_var, reference["layer4.2.bn3.running_var"])
    assert mgn.b1[1] is not mgn.b2[1]


def test_pretrained_wrappers_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = timm.create_model("resnet18", pretrained=False)
    state = source.state_dict()
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    safe = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safe))
    for path in (wrapped, safe):
        model = build_model("resnet18", NUM_CLASSES, pretrained=path)
        assert torch.equal(model.backbone.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])


def test_pretrained_from_a_reidlab_model_state_dict(tmp_path):
    source = build_model("resnet18_tiny", 7)
    path = tmp_path / "reid.pth"
    torch.save(source.state_dict(), path)  # backbone.* plus head.* of another class count
    model = build_model("resnet18_tiny", NUM_CLASSES, pretrained=path)
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    report = load_pretrained(build_model("resnet18_tiny", 0).backbone, path)
    assert report.fits and "head.classifier.weight" in report.skipped_heads


def test_pretrained_vit_resizes_position_embedding(tmp_path):
    source = timm.create_model("vit_base_patch16_224", pretrained=False)
    path = tmp_path / "vit_b16.pth"
    torch.save(source.state_dict(), path)
    model = build_model("vit_base_transreid", NUM_CLASSES, img_size=(256, 128), pretrained=path, jpm=True)
    vit = model.backbone
    assert torch.equal(vit.blocks[5].attn.qkv.weight, source.blocks[5].attn.qkv.weight)
    assert torch.equal(vit.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert torch.equal(model.local_branch[0].attn.proj.weight, source.blocks[-1].attn.proj.weight)
    assert torch.equal(vit.cls_token, source.cls_token)
    old = source.pos_embed.detach()[0]
    new = vit.pos_embed.detach()[0]
    assert torch.equal(new[0], old[0])
    # bilinear, half-pixel centres, edge clamp (F.interpolate align_corners=False), written out in float64
    grid = old[1:].double().reshape(14, 14, -1)
    for row in range(21):
        for col in range(10):
            y = min(max((row + 0.5) * 14 / 21 - 0.5, 0.0), 13.0)
            x = min(max((col + 0.5) * 14 / 10 - 0.5, 0.0), 13.0)
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, 13), min(x0 + 1, 13)
            dy, dx = y - y0, x - x0
            expected = ((1 - dy) * (1 - dx) * grid[y0, x0] + (1 - dy) * dx * grid[y0, x1]
                        + dy * (1 - dx) * grid[y1, x0] + dy * dx * grid[y1, x1])
            assert torch.allclose(new[1 + row * 10 + col].double(), expected, atol=1e-5)
    report = load_pretrained(build_model("vit_base_transreid", 0, img_size=(256, 128)).backbone, path,
                             pos_embed_interpolation="bicubic")
    assert report.fits and "head.weight" in report.skipped_heads and "bicubic" in report.resized[0]


def test_bad_checkpoints_report_keys_and_shapes(tmp_path):
    small = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), small)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight: checkpoint \[64, 64, 3, 3\] vs model \[64, 64, 1, 1\]"):
        build_model("resnet50", NUM_CLASSES, pretrained=small)
    # plain ResNet weights into an IBN-a model: names differ where IBN sits, and the error says so
    with pytest.raises(ValueError, match=r"missing in checkpoint.*layer1\.0\.bn1\.IN\.weight(?s:.*)not in model.*layer1\.0\.bn1\.weight"):
        build_model("resnet18_ibn_a", NUM_CLASSES, pretrained=small)
    partial_fit = build_model("resnet18_ibn_a", NUM_CLASSES, pretrained=small, strict=False)
    assert partial_fit.backbone.conv1.weight.shape == (64, 3, 7, 7)


def test_pretrained_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="local weight file.*never downloads"):
        build_model("resnet18", NUM_CLASSES, pretrained=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("vit_tiny_transreid", NUM_CLASSES, pretrained=tmp_path / "missing.pth")
    unsafe = tmp_path / "pickled_module.pth"
    torch.save({"model": nn.Linear(2, 2)}, unsafe)  # a pickled object, not plain tensors
    with pytest.raises(ValueError, match="as weights: it holds Python objects other than tensors"):
        build_model("resnet18", NUM_CLASSES, pretrained=unsafe)


# ---------------------------------------------------------------- scene adversary attachment


def test_scene_adversary_sees_the_retrieval_feature_of_every_branch():
    for name, size in (("resnet18_ibn_a", (64, 32)), ("mgn_resnet18_ibn_a", (96, 32))):
        model = build_model(name, NUM_CLASSES, num_scenes=3, scene_objective="reverse", scene_strength=0.5)
        adversary = model.scene_adversary
        assert isinstance(adversary, SceneAdversary) and adversary.strength == 0.5
        assert adversary.classifier.in_features == model.feature_dim  # MGN: all 8 parts, 2048-d
        out = model(torch.randn(2, 3, *size))
        assert out["scene_logits"].shape == (2, 3) and "scene_confusion_logits" not in out
        # The classifier's logits are a function of `feat`, the feature retrieval uses.
        torch.testing.assert_close(out["scene_logits"], adversary.classifier(out["feat"]))
        out["scene_logits"].sum().backward()
        assert model.stem[0].weight.grad is not None if name.startswith("mgn") else model.backbone.conv1.weight.grad is not None
    with pytest.raises(ValueError, match="num_scenes"):
        build_model("resnet18", NUM_CLASSES, num_scenes=1)


# ---------------------------------------------------------------- scene removal


@pytest.mark.parametrize("lambda_", [1.0, 0.25])
def test_grad_reverse_flips_and_scales(lambda_):
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    y = grad_reverse(x, lambda_)
    assert torch.equal(y, x)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -lambda_ * upstream)


def test_reverse_objective_trains_the_classifier_and_reverses_the_feature_gradient():
    torch.manual_seed(0)
    feature = torch.randn(8, 6, requires_grad=True)
    scenes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    adversary = SceneAdversary(6, 3, objective="reverse", strength=0.5)
    plain = torch.nn.Linear(6, 3)
    plain.load_state_dict(adversary.classifier.state_dict())
    F.cross_entropy(adversary(feature)["scene_logits"], scenes).backward()
    reversed_grad = feature.grad.clone()
    feature.grad = None
    F.cross_entropy(plain(feature), scenes).backward()
    torch.testing.assert_close(reversed_grad, -0.5 * feature.grad)
    torch.testing.assert_close(adversary.classifier.weight.grad, plain.weight.grad)
    adversary.strength = 2.0  # ramps set the attribute
    feature.grad = None
    F.cross_entropy(adversary(feature)["scene_logits"], scenes).backward()
    torch.testing.assert_close(feature.grad, reversed_grad * 2.0 / 0.5)
    with pytest.raises(ValueError, match="num_scenes"):
        SceneAdversary(6, 1)
    with pytest.raises(ValueError, match="unknown scene objective 'flip'"):
        SceneAdversary(6, 3, objective="flip")


@pytest.mark.parametrize("objective", ["confusion", "entropy"])
@pytest.mark.parametrize("hidden", [None, 4])
def test_confusion_objectives_split_the_classifier_and_the_backbone_signal(objective, hidden):
    """The classifier learns only from its cross-entropy on the detached feature; the backbone gets only the
    objective's gradient, through the classifier's current weights, times the strength."""
    from reidlab.losses import SCENE_PUSH_LOSSES

    torch.manual_seed(0)
    feature = torch.randn(8, 6, requires_grad=True)
    scenes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    adversary = SceneAdversary(6, 3, objective=objective, strength=0.3, hidden=hidden)
    out = adversary(feature)
    torch.testing.assert_close(out["scene_logits"], out["scene_confusion_logits"])
    F.cross_entropy(out["scene_logits"], scenes).backward(retain_graph=True)
    assert feature.grad is None  # the classifier's loss does not reach the backbone
    classifier_grads = [p.grad.clone() for p in adversary.parameters()]
    confusion = SCENE_PUSH_LOSSES[objective][0]
    confusion(out["scene_confusion_logits"]).backward()
    for before, p in zip(classifier_grads, adversary.parameters()):
        torch.testing.assert_close(p.grad, before)  # ... and the backbone's loss does not move the classifier
    # Reference: the objective's gradient through a plain copy of the classifier, scaled by the strength.
    plain = torch.nn.Linear(6, 3) if hidden is None else torch.nn.Sequential(
        torch.nn.Linear(6, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 3))
    plain.load_state_dict(adversary.classifier.state_dict())
    copy = feature.detach().clone().requires_grad_(True)
    confusion(plain(copy)).backward()
    torch.testing.assert_close(feature.grad, 0.3 * copy.grad)


def test_moments_objective_hands_the_loss_the_feature_and_trains_the_classifier_on_its_detached_copy():
    from reidlab.losses import scene_variance_ratio

    torch.manual_seed(0)
    feature = torch.randn(8, 6, requires_grad=True)
    scenes = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    adversary = SceneAdversary(6, 3, objective="moments", strength=0.3)
    out = adversary(feature)
    assert set(out) == {"scene_logits", "scene_feature"} and torch.equal(out["scene_feature"], feature)
    F.cross_entropy(out["scene_logits"], scenes).backward()
    assert feature.grad is None and adversary.classifier.weight.grad is not None
    scene_variance_ratio(out["scene_feature"], scenes).backward()
    copy = feature.detach().clone().requires_grad_(True)
    scene_variance_ratio(copy, scenes).backward()
    torch.testing.assert_close(feature.grad, 0.3 * copy.grad)


def test_scene_variance_ratio_is_the_summed_correlation_ratio():
    """Brute force: per dimension, the between-scene sum of squares over the total one, scene by scene."""
    from reidlab.losses import scene_variance_ratio

    g = torch.Generator().manual_seed(3)
    x, scenes = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.tensor([2, 0, 0, 1, 2, 2, 0, 1, 1, 2, 0, 7])
    expected = 0.0
    for d in range(5):
        column, centre = x[:, d], x[:, d].mean()
        between = sum((scenes == s).sum() * (column[scenes == s].mean() - centre) ** 2 for s in scenes.unique())
        expected += between / ((column - centre) ** 2).sum()
    torch.testing.assert_close(scene_variance_ratio(x, scenes, eps=0.0), expected.float())
    # 0 when the scenes share their mean; the scene's whole variance (1 per dimension) when it is all there is.
    shared = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [1.0, 2.0], [-1.0, -2.0]])
    assert scene_variance_ratio(shared, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-6)
    assert scene_variance_ratio(shared, torch.tensor([0, 1, 0, 1])).item() == pytest.approx(2.0, abs=1e-5)


def test_confusion_losses_are_smallest_at_a_uniform_posterior():
    from reidlab.losses import negative_entropy, uniform_cross_entropy

    uniform, peaked = torch.zeros(4, 5), torch.eye(5)[:4] * 6
    assert uniform_cross_entropy(uniform).item() == pytest.approx(math.log(5))
    assert negative_entropy(uniform).item() == pytest.approx(-math.log(5))
    assert uniform_cross_entropy(peaked) > uniform_cross_entropy(uniform)
    assert negative_entropy(peaked) > negative_entropy(uniform)
    # Cross-entropy to uniform is the mean of -log p over the classes.
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(logits.repeat_interleave(5, 0), torch.arange(5).repeat(6))
    torch.testing.assert_close(uniform_cross_entropy(logits), expected)
