from . import plantd_apply
