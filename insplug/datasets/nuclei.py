"""The DSB2018 nuclei set (COCO format, one class), as shipped in ``shared/data/nuclei``."""
CLASSES = ('nucleus',)
