# SharpMask on the shapes set (CPU demo): the DeepMask demo plus the refinement at the release's
# widths (km = ks = 32, first horizontal convs 64/64/64/32), second stage only (trunk and
# DeepMask heads frozen); set load_from to a trained deepmask_r18_shapes checkpoint.
# Not narrower: at km = ks = 16 the last refinement module has a single channel, and on a
# trained demo DeepMask its horizontal + vertical sum is negative at every pixel at
# initialisation, so the ReLU passes nothing and every refinement weight gets a zero gradient
# (only the final bias learns the foreground prior). Measured with 300 SharpMask iterations on
# the 60-iteration DeepMask of tests/e2e/test_deepmask_e2e.py (seed 0): trained at lr 0.1,
# km = 16 left 43 of the 44 refinement tensors (all but the final bias) at their initial values,
# segm mAP 0.000, and km = 32 moved every one, segm mAP 0.043 (the DeepMask's own: 0.016);
# trained at lr 0.05, km = 16 died after its first steps (median weight change 1.1e-5 of the
# norm), segm mAP 0.000, and km = 32 reached 0.046 (the DeepMask's own: 0.035).
_base_ = './deepmask_r18_shapes.py'
model = dict(
    net=dict(label_size=64, sharpmask=dict(km=32, ks=32, hidden=(64, 64, 64, 32))),
    train_cfg=dict(stage='sharpmask', pos_per_image=0, neg_per_image=0))
load_from = None
load_from_strict = False  # the DeepMask checkpoint has no refinement modules (new here)
optim_wrapper = dict(optimizer=dict(momentum=0.0, weight_decay=0.0))
