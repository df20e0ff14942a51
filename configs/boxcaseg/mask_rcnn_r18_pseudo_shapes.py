# BoxCaseg step 3 on the shapes set (CPU demo): the demo Mask R-CNN trained on pseudo masks,
# evaluated with the true val masks. pseudo.json:
#   python tools/make_pseudo_masks.py configs/boxcaseg/boxcaseg_hrnet_tiny_shapes.py CKPT \
#       --ann data/shapes/train/annotations.json --out data/shapes/train/pseudo.json
_base_ = ['../demo/mask_rcnn_r18_shapes.py']
train_dataloader = dict(dataset=dict(ann_file='train/pseudo.json'))
