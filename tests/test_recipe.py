"""Each field of FBNetV3's training recipe changes training as it should (the trainer
implements them for real): mixup mixes labels with the inputs, the EMA weights differ from the
raw ones and are the ones evaluated, drop path drops residual branches in training only,
dropout reaches the classifier."""

import numpy as np
import torch

from nasforge.spaces.joint import JointSpace
from nasforge.testing import tiny_dataset
from nasforge.train.evaluate import accuracy
from nasforge.train.trainer import Recipe, Trainer, mixup_batch


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 25, 10))


def test_mixup_mixes_labels_by_the_inputs_lambda():
    y = torch.arange(10).repeat(2)
    x = y.float()[:, None, None, None].expand(-1, 1, 4, 4).clone()  # image value = its label
    xm, soft, lam = mixup_batch(x, y, 0.4, 10, torch.Generator().manual_seed(0))
    assert 0 < lam < 1
    torch.testing.assert_close(soft.sum(1), torch.ones(len(y)))
    # each mixed image carries the same mixture of labels as its target
    torch.testing.assert_close(xm.mean((1, 2, 3)), soft @ torch.arange(10.0))
    assert (soft.max(1).values < 1).any()  # labels really are mixed
    # seeded: the same generator state draws the same λ and permutation
    xm2, soft2, lam2 = mixup_batch(x, y, 0.4, 10, torch.Generator().manual_seed(0))
    assert lam2 == lam and torch.equal(soft2, soft)
    _, smooth, _ = mixup_batch(x, y, 0.4, 10, torch.Generator().manual_seed(0),
                               label_smoothing=0.1)
    assert float(smooth.min()) >= 0.01 - 1e-6


def test_mixup_changes_the_training():
    data = tiny_dataset(n_train=64, n_val=32, n_test=32, size=12)
    outs = []
    for mix in (0.0, 0.4):
        t = Trainer(_model(), data, Recipe(epochs=1, batch_size=16, augment=False, mixup=mix),
                    progress=False)
        t.fit(test=False)
        outs.append(t.history[0]["loss"])
    assert outs[0] != outs[1]


def test_ema_weights_differ_from_raw_and_are_the_ones_evaluated():
    data = tiny_dataset(n_train=96, n_val=48, n_test=48, size=12)
    t = Trainer(_model(), data, Recipe(epochs=3, batch_size=16, lr=0.05, augment=False,
                                       ema=0.9), progress=False)
    res = t.fit()
    assert t.final_model() is t.ema_model
    raw = dict(t.model.named_parameters())
    diff = [n for n, p in t.ema_model.named_parameters() if not torch.equal(p, raw[n])]
    assert diff, "EMA weights equal the raw ones"
    assert res.val_acc == accuracy(t.ema_model, data.val)
    assert res.test_acc == accuracy(t.ema_model, data.test)
    plain = Trainer(_model(), data, Recipe(epochs=1, batch_size=16, augment=False),
                    progress=False)
    assert plain.ema_model is None and plain.final_model() is plain.model


def _joint_model(drop_path: float):
    sp = JointSpace("joint-fmnist")
    arch = sp.sample(np.random.default_rng(0))
    g = {**arch.genes, "depths": [2, 3, 3, 2],  # residual blocks in every stage
         "recipe": {**arch.genes["recipe"], "drop_path": drop_path, "dropout": 0.0}}
    torch.manual_seed(0)
    return sp.build(sp.arch(g), 10, 1)


def test_drop_path_drops_residual_branches_in_training_only():
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    m, ref = _joint_model(0.2), _joint_model(0.0)
    ref.load_state_dict(m.state_dict())
    assert m.drop_path_prob == 0.2 and ref.drop_path_prob == 0.0
    m.eval(), ref.eval()
    torch.testing.assert_close(m(x), ref(x))  # eval: no drop path at all
    m.train(), ref.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(1)
    b = ref(x)
    assert not torch.allclose(a, b)  # training: branches are dropped
    torch.manual_seed(2)
    torch.testing.assert_close(ref(x), b)  # and nothing else is random
    depth = [blk.drop_path.p for blk, _ in m._residual]
    assert depth == sorted(depth) and depth[-1] <= 0.2  # linear in depth


def test_trainer_sets_dropout_and_the_drop_path_schedule():
    data = tiny_dataset(n_train=32, n_val=16, n_test=16)
    m = _joint_model(0.0)
    t = Trainer(m, data, Recipe(epochs=1, batch_size=16, dropout=0.3, drop_path=0.2,
                                drop_path_schedule="constant"), progress=False)
    assert t.model.dropout_p == 0.3
    t.fit(test=False)
    assert t.model.drop_path_prob == 0.2  # constant: the full rate from the first epoch
    t2 = Trainer(_joint_model(0.0), data, Recipe(epochs=2, batch_size=16, drop_path=0.2),
                 progress=False)
    t2.fit(test=False)
    assert t2.model.drop_path_prob == 0.1  # linear (DARTS): p · epoch / epochs
