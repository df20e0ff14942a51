# SharpMask on the shapes set (CPU demo): the DeepMask demo plus the refinement (km = ks = 16),
# second stage only (trunk and DeepMask heads frozen); set load_from to a trained
# deepmask_r18_shapes checkpoint.
_base_ = './deepmask_r18_shapes.py'
model = dict(
    net=dict(label_size=64, sharpmask=dict(km=16, ks=16, hidden=(32, 32, 32, 16))),
    train_cfg=dict(stage='sharpmask', pos_per_image=0, neg_per_image=0))
load_from = None
load_from_strict = False  # the DeepMask checkpoint has no refinement modules (new here)
optim_wrapper = dict(optimizer=dict(momentum=0.0, weight_decay=0.0))
