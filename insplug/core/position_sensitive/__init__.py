"""Position-sensitive score maps (InstanceFCN, R-FCN, FCIS): PS RoI pooling and the dense
assembling of k x k instance-sensitive maps."""
from .assemble import assemble_windows, window_cell_index
from .pooling import (ps_bin_bounds, ps_channel_index, ps_roi_pool, round_half_away,
                      summed_area_table)

__all__ = ['assemble_windows', 'window_cell_index', 'ps_bin_bounds', 'ps_channel_index',
           'ps_roi_pool', 'round_half_away', 'summed_area_table']
