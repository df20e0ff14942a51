"""SparseInst mmdet adapters: detector, criterion, matcher; encoder/decoder registration."""
