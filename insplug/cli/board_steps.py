"""Board entries made of steps: BoxCaseg's salient images and pseudo masks.

BoxCaseg's published figure is not its segmenter's: (1) salient images with pixel masks are
prepared, (2) the box-conditioned segmenter trains on box-only images plus those salient
images, (3) it writes pseudo masks of the training boxes, and a stock Mask R-CNN trained on
them is evaluated. On the board, step 2 and step 3 are two entries of one ``--out``, keyed in
their configs' ``leaderboard`` dict:

- ``salient='shapes'`` (the segmenter): the salient images are single-object crops cut from a
  generated shapes set (``insplug.core.boxcaseg.salient``), in the release's role of
  DUT-TR-Single: other objects than the target set's, with masks. Cutting them from the
  nuclei training set would hand the segmenter nuclei masks, which a box-supervised row must
  not see.
- ``step_of=NAME``: the entry is a step of NAME: trained and kept, listed under the table, not
  ranked (the segmenter's own evaluation segments the val set's true boxes).
- ``pseudo_masks_from=NAME`` (the Mask R-CNN): before training, the NAME entry's final model
  writes pseudo masks of this entry's training boxes (``insplug.cli.pseudo_masks``) to
  ``WORK_DIR/pseudo.json``, and training reads them instead of the true masks. The row's
  train time includes NAME's and the pseudo-mask pass.
"""
import json
import os.path as osp

SALIENT_SOURCE_IMAGES = 300  # shapes images the salient crops are cut from (the demo's count)
PSEUDO_COST_FILE = 'pseudo_masks_cost.json'


def point_salient_at_shapes(salient_dataset, out):
    """Write (once per ``out``) salient crops of a generated shapes set; point ``salient_dataset``
    (the ``salient`` config of a ``BoxSalientDataset``) at them. Returns the crops' json path."""
    from insplug.core.boxcaseg.salient import make_salient_crops
    from insplug.datasets.shapes import generate_split
    root = osp.join(out, 'salient_shapes')
    crops = osp.join(root, 'salient')
    ann = osp.join(crops, 'annotations.json')
    if not osp.isfile(ann):  # written last: a partial set is made again
        source = osp.join(root, 'train')
        generate_split(source, SALIENT_SOURCE_IMAGES, seed=0)
        make_salient_crops(osp.join(source, 'annotations.json'), osp.join(source, 'images'),
                           crops)
    salient_dataset.update(type='ShapesDataset', data_root=crops + '/',
                           ann_file='annotations.json', data_prefix=dict(img='images/'))
    salient_dataset.pop('metainfo', None)
    return ann


def train_on_pseudo_masks(train_dataset, work_dir, parent_dir, parent_entry, parent_checkpoint,
                          clock):
    """Pseudo masks of ``train_dataset``'s boxes by the parent segmenter; training reads them.

    Args:
        train_dataset: the innermost training dataset config (``data_root``, ``ann_file``,
            ``data_prefix.img`` pointed at the board's data); its ``ann_file`` is replaced.
        work_dir: this entry's folder (``pseudo.json`` and the pass's cost are kept there, so
            a resumed entry does not write them again).
        parent_dir: the segmenter entry's folder (its config is the one the runner dumped).
        parent_entry: path of the segmenter's finished row (``train_s``).
        parent_checkpoint: its final checkpoint.
        clock: what train time is measured in (seconds).

    Returns:
        seconds to add to this entry's train time: the segmenter's training and the pass.
    """
    from insplug.cli.pseudo_masks import write_pseudo_masks
    pseudo = osp.join(work_dir, 'pseudo.json')
    cost_path = osp.join(work_dir, PSEUDO_COST_FILE)
    root = train_dataset.data_root
    if not osp.isfile(cost_path):  # written after pseudo.json: a partial pass is made again
        start = clock()
        name = osp.basename(parent_dir.rstrip('/'))
        write_pseudo_masks(osp.join(parent_dir, f'{name}.py'), parent_checkpoint,
                           osp.join(root, train_dataset.ann_file), pseudo,
                           img_dir=osp.join(root, train_dataset.data_prefix['img']))
        with open(cost_path, 'w') as f:
            json.dump(dict(pseudo_masks_s=clock() - start), f)
    with open(cost_path) as f:
        pseudo_s = json.load(f)['pseudo_masks_s']
    with open(parent_entry) as f:
        parent_s = json.load(f)['train_s']
    train_dataset.ann_file = pseudo  # absolute: mmengine does not join it with data_root
    return parent_s + pseudo_s
