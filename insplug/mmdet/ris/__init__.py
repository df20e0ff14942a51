"""RIS mmdet adapters: ``RISConvNet`` trunk, ``RISHead``, ``RISSegmentor``,
``RISCurriculumHook``."""
