"""Published FBNetV2 and FBNetV3 settings, as data.

Rows come from facebookresearch/mobile-vision (the authors' release), files
``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnetv2.py`` (``MODEL_ARCH_FBNETV2_PAPER``:
FBNetV2_F0–F4, L1, L2) and ``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnetv3.py``
(``MODEL_ARCH_FBNETV3``: FBNetV3_A–G), rewritten in the seed's ``[k, c, s, n, e, se, act]``
form: ``ir_k5_sehsig_hs`` → ``[5, c, s, n, e, 1, "hswish"]``, ``ir_k5`` → ``relu`` without SE,
``skip`` → ``k = 0``, ``ir_pool_hs C e`` → ``last_pw = e``, ``last_fc = C``. FBNetV3 uses
``less_se_channels`` and two depthwise padding overrides, as the release does.

``published`` (MMACs, Mparams at 1000 classes): FBNetV2 from the ``nflops``/``nparams``
comments of the release file (F0–F4, L2; L1 has none there — its MACs, 325M, are the
FBNetV2 paper's; F0's ``nparams: 1.53`` matches our count *without* the classifier, 1.54M, so
it is left out); FBNetV3 MACs from the FBNetV3 paper's model table (params not recorded
here). ``tests/test_models.py`` checks the built models against these numbers.
"""

from __future__ import annotations

from nasforge.models.fbnetv2 import ModelSetting

H, R = "hswish", "relu"
V2_SRC = "mobile-vision fbnet_modeldef_cls_fbnetv2.py"
V3_SRC = "mobile-vision fbnet_modeldef_cls_fbnetv3.py"

_F1_STAGES = (
    ((5, 8, 1, 1, 1, 0, R),),
    ((5, 24, 2, 1, 5.4566, 0, R), (5, 24, 1, 1, 4.7912, 0, R)),
    ((5, 32, 2, 1, 5.3501, 1, R), (5, 24, 1, 1, 4.5379, 1, R)),
    ((5, 56, 2, 1, 5.7133, 0, H), (3, 56, 1, 1, 4.1212, 0, H), (3, 56, 1, 1, 5.1246, 1, H),
     (0, 80, 1, 1, 5.0333, 0, H), (5, 80, 1, 1, 4.5070, 1, H), (5, 80, 1, 1, 1.7712, 1, H)),
    ((3, 144, 2, 1, 4.5685, 1, H), (5, 144, 1, 1, 5.8400, 1, H), (5, 144, 1, 1, 6.8754, 1, H),
     (0, 224, 1, 1, 6.5245, 0, H)),
)
_L1_STAGES = (
    ((3, 16, 1, 1, 1, 0, H),),
    ((5, 24, 2, 1, 5.4566, 0, H), (5, 24, 1, 1, 1.7912, 0, H), (3, 24, 1, 1, 1.7912, 0, H),
     (5, 24, 1, 1, 1.7912, 0, H)),
    ((5, 40, 2, 1, 5.3501, 1, H), (5, 32, 1, 1, 3.5379, 1, H), (5, 32, 1, 2, 4.5379, 1, H)),
    ((5, 64, 2, 1, 5.7133, 0, H), (3, 64, 1, 1, 2.1212, 0, H), (0, 64, 1, 1, 3.1246, 0, H),
     (3, 64, 1, 1, 3.1246, 0, H), (3, 112, 1, 1, 5.0333, 0, H), (5, 112, 1, 1, 2.5070, 1, H),
     (5, 112, 1, 1, 1.7712, 1, H), (5, 112, 1, 1, 2.7712, 1, H), (5, 112, 1, 2, 3.7712, 1, H)),
    ((3, 184, 2, 1, 5.5685, 1, H), (5, 184, 1, 2, 2.8400, 1, H), (5, 184, 1, 2, 4.8754, 1, H),
     (0, 224, 1, 1, 6.5245, 0, H)),
)

FBNETV2: tuple[ModelSetting, ...] = (
    ModelSetting("fbnetv2_f0", 8, (
        ((5, 8, 1, 1, 1, 0, H),),
        ((5, 16, 2, 1, 4, 0, H), (5, 16, 1, 1, 3, 0, H)),
        ((5, 24, 2, 1, 4, 1, R), (5, 24, 1, 1, 3, 1, R)),
        ((5, 48, 2, 1, 4, 1, H), (3, 48, 1, 1, 3, 1, H), (5, 64, 1, 1, 3, 1, H),
         (5, 64, 1, 1, 2, 1, H)),
        ((3, 128, 2, 1, 3, 1, H), (5, 160, 1, 1, 3, 1, H), (0, 192, 1, 1, 4, 0, H)),
    ), last_pw=4, last_fc=1280, input_size=224, published=(65.2, None), source=V2_SRC),
    ModelSetting("fbnetv2_f1", 8, _F1_STAGES, last_fc=1600, input_size=128,
                 published=(56.41, 6.00), source=V2_SRC),
    ModelSetting("fbnetv2_f2", 8, _F1_STAGES, last_fc=1600, input_size=160,
                 published=(85.44, 6.00), source=V2_SRC),
    ModelSetting("fbnetv2_f3", 8, _F1_STAGES, last_fc=1984, input_size=192,
                 published=(121.82, 6.90), source=V2_SRC),
    ModelSetting("fbnetv2_f4", 16, (
        ((3, 16, 1, 1, 1, 0, H),),
        ((5, 24, 2, 1, 5.4566, 0, H), (5, 24, 1, 2, 1.7912, 0, H)),
        ((5, 32, 2, 1, 5.3501, 1, R), (5, 32, 1, 1, 3.5379, 1, R), (5, 32, 1, 2, 4.5379, 1, R)),
        ((5, 64, 2, 1, 5.7133, 0, H), (3, 64, 1, 1, 2.1212, 0, H), (0, 64, 1, 1, 3.1246, 0, H),
         (3, 104, 1, 1, 5.0333, 0, H), (5, 104, 1, 1, 2.5070, 1, H),
         (5, 104, 1, 1, 1.7712, 1, H), (5, 112, 1, 1, 3.7712, 1, H)),
        ((3, 184, 2, 1, 5.5685, 1, H), (5, 184, 1, 1, 2.8400, 1, H),
         (5, 184, 1, 1, 4.8754, 1, H), (0, 224, 1, 1, 6.5245, 0, H)),
    ), input_size=224, published=(238.35, 6.99), source=V2_SRC),
    ModelSetting("fbnetv2_l1", 16, _L1_STAGES, input_size=224, published=(325.0, None),
                 source=V2_SRC + " (MACs: FBNetV2 paper)"),
    ModelSetting("fbnetv2_l2", 16, _L1_STAGES, input_size=256, published=(423.91, 8.50),
                 source=V2_SRC),
)


def _v3(name: str, stem: int, stages: tuple, size: int, macs: float) -> ModelSetting:
    return ModelSetting(name, stem, stages, input_size=size, less_se_channels=True,
                        published=(macs, None), source=V3_SRC + " (MACs: FBNetV3 paper)")


_P1, _P0 = {"dw_padding": 1}, {"dw_padding": 0}
_V3_AB = (
    ((3, 16, 1, 2, 1, 0, H),),
    ((5, 24, 2, 1, 4, 0, H), (5, 24, 1, 3, 2, 0, H)),
    ((5, 40, 2, 1, 5, 1, H), (5, 40, 1, 4, 3, 1, H)),
    ((5, 72, 2, 1, 5, 0, H, _P1), (3, 72, 1, 4, 3, 0, H), (3, 120, 1, 1, 5, 1, H),
     (5, 120, 1, 5, 3, 1, H)),
    ((3, 184, 2, 1, 6, 1, H, _P0), (5, 184, 1, 5, 4, 1, H), (5, 224, 1, 1, 6, 1, H)),
)
FBNETV3: tuple[ModelSetting, ...] = (
    _v3("fbnetv3_a", 16, _V3_AB, 224, 357.0),
    _v3("fbnetv3_b", 16, _V3_AB, 248, 461.0),
    _v3("fbnetv3_c", 16, (
        ((3, 16, 1, 2, 1, 0, H),),
        ((5, 24, 2, 1, 5, 0, H), (3, 24, 1, 4, 3, 0, H)),
        ((5, 48, 2, 1, 5, 1, H), (5, 48, 1, 4, 2, 1, H)),
        ((5, 88, 2, 1, 4, 0, H, _P1), (3, 88, 1, 4, 3, 0, H), (3, 120, 1, 1, 4, 1, H),
         (5, 120, 1, 5, 3, 1, H)),
        ((5, 216, 2, 1, 5, 1, H, _P1), (5, 216, 1, 5, 5, 1, H), (5, 216, 1, 1, 6, 1, H)),
    ), 248, 557.0),
    _v3("fbnetv3_d", 24, (
        ((3, 16, 1, 2, 1, 0, H),),
        ((3, 24, 2, 1, 5, 0, H), (3, 24, 1, 5, 2, 0, H)),
        ((5, 40, 2, 1, 4, 1, H), (3, 40, 1, 4, 3, 1, H)),
        ((3, 72, 2, 1, 5, 0, H), (3, 72, 1, 4, 3, 0, H), (3, 128, 1, 1, 5, 1, H),
         (5, 128, 1, 6, 3, 1, H)),
        ((3, 208, 2, 1, 6, 1, H), (5, 208, 1, 5, 5, 1, H), (5, 240, 1, 1, 6, 1, H)),
    ), 248, 644.0),
    _v3("fbnetv3_e", 24, (
        ((3, 16, 1, 3, 1, 0, H),),
        ((5, 24, 2, 1, 4, 0, H), (5, 24, 1, 4, 2, 0, H)),
        ((5, 48, 2, 1, 4, 1, H), (5, 48, 1, 4, 3, 1, H)),
        ((5, 80, 2, 1, 5, 0, H, _P1), (3, 80, 1, 4, 3, 0, H), (3, 128, 1, 1, 5, 1, H),
         (5, 128, 1, 7, 3, 1, H)),
        ((3, 216, 2, 1, 6, 1, H), (5, 216, 1, 5, 5, 1, H), (5, 240, 1, 1, 6, 1, H)),
    ), 264, 762.0),
    _v3("fbnetv3_f", 24, (
        ((3, 24, 1, 3, 1, 0, H),),
        ((5, 32, 2, 1, 4, 0, H), (5, 32, 1, 4, 2, 0, H)),
        ((5, 56, 2, 1, 4, 1, H), (5, 56, 1, 4, 3, 1, H)),
        ((5, 88, 2, 1, 5, 0, H), (3, 88, 1, 4, 3, 0, H), (3, 144, 1, 1, 5, 1, H),
         (5, 144, 1, 8, 3, 1, H)),
        ((3, 248, 2, 1, 6, 1, H, _P0), (5, 248, 1, 6, 5, 1, H), (5, 272, 1, 1, 6, 1, H)),
    ), 272, 1181.0),
    _v3("fbnetv3_g", 32, (
        ((3, 24, 1, 3, 1, 0, H),),
        ((5, 40, 2, 1, 4, 0, H), (5, 40, 1, 4, 2, 0, H)),
        ((5, 56, 2, 1, 4, 1, H), (5, 56, 1, 4, 3, 1, H)),
        ((5, 104, 2, 1, 5, 0, H), (3, 104, 1, 4, 3, 0, H), (3, 160, 1, 1, 5, 1, H),
         (5, 160, 1, 8, 3, 1, H)),
        ((3, 264, 2, 1, 6, 1, H), (5, 264, 1, 6, 5, 1, H), (5, 288, 1, 2, 6, 1, H)),
    ), 320, 2132.0),
)
