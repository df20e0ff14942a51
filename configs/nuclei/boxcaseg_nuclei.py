# BoxCaseg on the nuclei board, step 3 of 3 (the row): the baseline Mask R-CNN
# (mask_rcnn_nuclei.py, unchanged) trained on pseudo masks of the training boxes, evaluated with
# the true val masks, as the release reports BoxCaseg (a Mask R-CNN on its pseudo masks).
# `leaderboard.pseudo_masks_from`: before training, the final model of the
# boxcaseg_segmenter_nuclei entry (same --out, listed before this one) writes the pseudo masks
# (insplug/cli/board_steps.py; merged as the release's proxy_mask scripts merge them), and the
# row's train time includes the segmenter's and that pass. Outside the board:
#   python tools/make_pseudo_masks.py configs/nuclei/boxcaseg_segmenter_nuclei.py CKPT \
#       --ann ../shared/data/nuclei/train/annotations.json --out NUCLEI/train/pseudo.json
# where NUCLEI is a writable copy of the set (../shared is read-only).
_base_ = ['./mask_rcnn_nuclei.py']
leaderboard = dict(method='BoxCaseg', family='box-supervised (pseudo masks)',
                   pseudo_masks_from='boxcaseg_segmenter_nuclei')
train_dataloader = dict(dataset=dict(ann_file='train/pseudo.json'))
