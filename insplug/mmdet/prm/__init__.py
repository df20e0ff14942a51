"""mmdet adapters of PRM (``PRMSegmentor``) and CountSeg / ILC (``CountSegSegmentor``), and the
class-agnostic proposal sources (``FileProposals``, ``ColourRegionProposals``) they retrieve
instances from. Training data comes through ``insplug.mmdet.weak.image_labels``.
"""
