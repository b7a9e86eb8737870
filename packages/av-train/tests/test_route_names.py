"""Route names: the router's (av_fusion_models.router.ROUTES) are the only spelling. av-eval may not import the
models package, so its plot labels are checked against the router's here, where both are visible."""

from av_eval.report import ROUTE_NAMES
from av_fusion_models.router import ROUTES
from av_train.serve.pictures import ROUTE_LABELS


def test_every_label_follows_the_routers_names_and_order():
    assert ROUTES == ("encoder_only", "decoder_only", "both")
    assert ROUTE_NAMES == tuple(route.replace("_", " ") for route in ROUTES)
    assert list(ROUTE_LABELS) == list(ROUTES)
    assert ROUTE_LABELS == {"encoder_only": "encoder", "decoder_only": "decoder", "both": "both"}
