# Swap-in: the multi-class Lovasz-softmax (classes='present', bermanmaxim/LovaszSoftmax) as the
# discriminative model's semantic loss instead of the cross entropy
# (configs/demo/discriminative_erfnet_shapes.py otherwise unchanged).
_base_ = '../demo/discriminative_erfnet_shapes.py'

model = dict(head=dict(loss_semantic=dict(type='LovaszSoftmaxLoss', classes='present',
                                          per_image=False)))
