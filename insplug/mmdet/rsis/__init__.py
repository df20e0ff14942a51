"""RSIS mmdet adapters: ``RSISResNet`` trunk, ``RSISHead``, ``RSISSegmentor``,
``RSISCurriculumHook``."""
