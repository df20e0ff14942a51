"""PRM (Zhou et al., CVPR 2018): peak stimulation, peak back-propagation, proposal retrieval."""
from .backprop import peak_backprop_conv2d, peak_backprop_mode, peak_response_maps
from .peaks import (find_peaks, local_peak_map, peak_filter_value, peak_stimulation,
                    peak_values)
from .scoring import (background_maps, morphological_gradient, proposal_scores,
                      release_resize, select_proposals)
from .inference import select_inference_peaks, retrieve_instances

__all__ = ['peak_backprop_conv2d', 'peak_backprop_mode', 'peak_response_maps', 'find_peaks',
           'local_peak_map', 'peak_filter_value', 'peak_stimulation', 'peak_values',
           'background_maps', 'morphological_gradient', 'proposal_scores', 'release_resize',
           'select_proposals', 'select_inference_peaks', 'retrieve_instances']
