"""PISL's partition boxes and the diagnostics that compare boxes with a known misalignment."""
import math
import sys

import pytest
import torch

from pisl.testing import REPO

sys.path.insert(0, REPO)
from projects.PISL.box_stats import follow_statistics  # noqa: E402
from projects.PISL.part_generators import DiffusionSTNParts  # noqa: E402
from projects.PISL.partition_boxes import (PartitionBoxes, band_patches, partition_heights,  # noqa: E402
                                           partition_logits, share_barrier)
from projects.PISL.person_cues import image_person_extent, row_profile  # noqa: E402


def test_partition_hand_case():
    """Heights 0.1 | 0.2, 0.3, 0.3 | 0.1 (no floor): part 0 spans 0.1-0.3 of the height, i.e.
    half-height 0.2 and centre 0.1 + 0.3 - 1 = -0.6 in map units; part 1 0.3-0.6, part 2 0.6-0.9."""
    heights = torch.tensor([[0.1, 0.2, 0.3, 0.3, 0.1]])
    logits = partition_logits(heights, 0.0)
    assert torch.allclose(partition_heights(logits, 0.0), heights)
    boxes = PartitionBoxes(3, min_part_height=0.0).thetas(logits).view(3, 6)
    assert boxes[:, 4].tolist() == pytest.approx([0.2, 0.3, 0.3])
    assert boxes[:, 5].tolist() == pytest.approx([-0.6, -0.1, 0.5])
    assert (boxes[:, [0, 1, 2, 3]] == torch.tensor([1.0, 0, 0, 0])).all()  # full width, no shear


@pytest.mark.parametrize("num_parts", [1, 3, 5])
def test_partition_invariants_hold_for_any_logits(num_parts):
    """Whatever the networks output: heights sum to 1, each part is at least its floor, the cut
    points are monotone and every box lies inside the image."""
    floor = 0.5 / num_parts / 2
    logits = torch.cat([torch.randn(200, num_parts + 2) * 3, torch.randn(20, num_parts + 2) * 60])
    heights = partition_heights(logits, floor)
    assert torch.allclose(heights.sum(1), torch.ones(len(logits)))
    assert (heights[:, 1:-1] >= floor - 1e-6).all() and (heights >= 0).all()
    boxes = PartitionBoxes(num_parts, min_part_height=floor).thetas(logits).view(len(logits), num_parts, 6)
    top, bottom = boxes[..., 5] - boxes[..., 4], boxes[..., 5] + boxes[..., 4]
    assert (top >= -1 - 1e-5).all() and (bottom <= 1 + 1e-5).all()
    assert (bottom[:, :-1] <= top[:, 1:] + 1e-5).all()  # part p ends where part p + 1 begins: ordered, tiled
    assert torch.allclose(bottom[:, :-1], top[:, 1:], atol=1e-5)


def test_untrained_partition_generator_starts_on_its_prior_and_stays_in_the_softmax_working_range():
    gen = DiffusionSTNParts(16, 3, stn_channels=8, sample_steps=5, boxes="partition")
    fmap, cond = torch.rand(4, 16, 8, 4), torch.randn(4, 16)
    out = gen.eval()(fmap, cond)
    heights = partition_heights(out["box_params"], 0.1)
    assert torch.allclose(heights, torch.tensor([0.03] + [0.94 / 3] * 3 + [0.03]).expand(4, -1), atol=1e-4)
    assert gen.at_bound(out).tolist() == [0.0, 0.0, 0.0]
    # The part losses' gradient reaches the denoiser's correction at full strength: no tanh.
    torch.manual_seed(0)
    train = gen.train()(fmap, cond)
    train["parts"].pow(2).sum().backward()
    assert gen.denoiser.net[-1].bias.grad.abs().min() > 0


def test_at_bound_counts_softmax_shares_in_the_flat_tail():
    boxes = PartitionBoxes(2, min_part_height=0.0)
    heights = torch.tensor([[0.005, 0.5, 0.49, 0.005], [0.1, 0.4, 0.4, 0.1]])
    at_bound = boxes.at_bound({"box_params": partition_logits(heights, 0.0, least_share=1e-4)})
    # Image 0: both margins under 2 %: part 0 has 1 of its 2 shares flat, part 1 too; image 1: none.
    assert at_bound.tolist() == pytest.approx([25.0, 25.0])


def _person_map(top_row, rows=16, height=8):
    """A feature map (1 x 4 x rows x 2) with uniform activation on ``height`` rows from ``top_row``."""
    fmap = torch.zeros(1, 4, rows, 2)
    fmap[:, :, top_row:top_row + height] = 1.0
    return fmap


@pytest.mark.parametrize("condition", ["global", "global+rows"])
def test_one_person_at_two_heights_gives_boxes_shifted_by_the_same_amount(condition):
    """The same person 4 of 16 rows (a quarter of the image) lower: with the person prior every
    part's centre moves down by a quarter of the image height, 0.5 in map units, and its height
    stays the same."""
    gen = DiffusionSTNParts(4, 3, stn_channels=8, sample_steps=5, boxes="partition", anchors="person",
                            person_quantile=0.01, condition=condition).eval()
    fmap = torch.cat([_person_map(2), _person_map(6)])
    cond = torch.randn(1, 4).expand(2, -1)  # the same global feature: only where the person is differs
    boxes = gen(fmap, cond)["thetas"].view(2, 3, 6)
    assert (boxes[1, :, 5] - boxes[0, :, 5]).tolist() == pytest.approx([0.5] * 3, abs=1e-4)
    assert torch.allclose(boxes[1, :, 4], boxes[0, :, 4], atol=1e-4)
    # The person spans rows 2-10 of 16: the parts tile 2/16 .. 10/16 of the height.
    top, bottom = (boxes[0, :, 5] - boxes[0, :, 4] + 1) / 2, (boxes[0, :, 5] + boxes[0, :, 4] + 1) / 2
    assert top[0].item() == pytest.approx(2 / 16 + 0.01 * 0.5, abs=2e-3)
    assert bottom[-1].item() == pytest.approx(10 / 16 - 0.005, abs=2e-3)


def _person_image(top, rows, height=16, width=8):
    """A person-like block (rows ``top`` .. ``top + rows``, the middle half of the width, one
    unit brighter than its row) on a background whose colour changes from row to row, as a
    floor and a wall do."""
    image = torch.linspace(-1, 1, height).view(1, 1, height, 1).expand(1, 3, height, width).clone()
    image[:, :, top:top + rows, width // 4:3 * width // 4] += 1.0
    return image


def test_image_person_extent_hand_case():
    """Rows 2-5 of 8 differ from their borders in half their width, every other row (plain,
    whatever its colour) in nothing: the mass is 1/4 in each of rows 2-5, so its 25 % point
    is at 3/8 of the height and its 75 % point at 5/8."""
    top, extent = image_person_extent(_person_image(2, rows=4, height=8), quantile=0.25)
    assert (top.item(), extent.item()) == (pytest.approx(3 / 8), pytest.approx(2 / 8))


def test_image_person_cue_gives_boxes_that_move_with_the_person():
    """The same person (8 rows high) 4 of 16 rows lower in the image: with the image cue, an untrained
    generator's boxes (its prior) move down by a quarter of the image height, 0.5 in map
    units, whatever the feature map; without the images it says what it needs."""
    gen = DiffusionSTNParts(4, 3, stn_channels=8, sample_steps=5, boxes="partition", anchors="person",
                            person_quantile=0.01, person_cue="image").eval()
    fmap, cond = torch.rand(1, 4, 8, 4).expand(2, -1, -1, -1), torch.randn(1, 4).expand(2, -1)
    boxes = gen(fmap, cond, torch.cat([_person_image(2, rows=8), _person_image(6, rows=8)]))["thetas"].view(2, 3, 6)
    assert (boxes[1, :, 5] - boxes[0, :, 5]).tolist() == pytest.approx([0.5] * 3, abs=1e-4)
    assert torch.allclose(boxes[1, :, 4], boxes[0, :, 4], atol=1e-4)
    with pytest.raises(ValueError, match="PERSON_CUE 'image'"):
        gen(fmap, cond)


def test_share_barrier_hand_case_and_its_gradient_at_the_floor():
    """Shares 1:4:1:1:1 of 8 over margin, 3 parts, margin: times 5 cells they are 0.625, 2.5 and
    three 0.625, so the barrier is -(log 2.5 + 4 log 0.625) / 5; equal shares give 0. A part
    squeezed to its floor (logit -10, share 1.1e-5) still gets a gradient of share - 1/5 to its
    logit, where the softmax's own slope g (1 - g) is 1.1e-5; so does a closed margin."""
    logits = torch.log(torch.tensor([[1.0, 4, 1, 1, 1]]))
    expected = -(math.log(2.5) + 4 * math.log(0.625)) / 5
    assert share_barrier(logits).item() == pytest.approx(expected, abs=1e-6)
    assert share_barrier(torch.zeros(2, 5)).item() == pytest.approx(0.0, abs=1e-6)
    share = math.exp(-10) / (4 + math.exp(-10))
    for cell in (2, 0):  # the middle part, the top margin
        squeezed = torch.zeros(1, 5, dtype=torch.float64)
        squeezed[0, cell] = -10
        squeezed.requires_grad_(True)
        share_barrier(squeezed).backward()
        assert squeezed.grad[0, cell].item() == pytest.approx(share - 1 / 5, rel=1e-9)


def test_share_barrier_toward_a_target_is_zero_there_and_pulls_toward_it():
    """Target shares 1:2:1 of 4, shares 1:1:2 of 4: KL = 1/4 log(1) + 1/2 log(2) + 1/4 log(1/2)
    = 1/4 log 2. At the target it is 0 whatever the target, and the gradient to each logit is
    share - target share (0.25 - 0.25, 0.25 - 0.5, 0.5 - 0.25)."""
    target = torch.log(torch.tensor([[1.0, 2, 1]], dtype=torch.float64))
    logits = torch.log(torch.tensor([[1.0, 1, 2]], dtype=torch.float64)).requires_grad_(True)
    barrier = share_barrier(logits, target)
    assert barrier.item() == pytest.approx(math.log(2) / 4, rel=1e-12)
    barrier.backward()
    assert logits.grad[0].tolist() == pytest.approx([0.0, -0.25, 0.25], abs=1e-12)
    assert share_barrier(target, target).item() == pytest.approx(0.0, abs=1e-12)


def test_prior_target_barrier_is_zero_on_the_person_prior():
    """With ``barrier_target`` prior a generator whose boxes are its person prior pays no barrier;
    with the uniform target the same boxes pay one (the prior is not equal shares)."""
    torch.manual_seed(0)
    fmap = _person_map(2)
    for target, zero in (("prior", True), ("uniform", False)):
        gen = DiffusionSTNParts(fmap.shape[1], 3, stn_channels=16, timesteps=10, boxes="partition",
                                anchors="person", barrier_target=target)
        prior = gen.cond_and_prior(fmap, torch.randn(len(fmap), fmap.shape[1]), None)[1]
        barrier = gen.boxes.saturation(torch.zeros_like(prior), prior)
        assert (barrier.item() == pytest.approx(0.0, abs=1e-6)) == zero


def test_partition_generator_reports_the_share_barrier_as_its_saturation():
    torch.manual_seed(0)
    gen = DiffusionSTNParts(8, 3, stn_channels=16, timesteps=10, boxes="partition").train()
    out = gen(torch.rand(4, 8, 4, 2), torch.randn(4, 8))
    assert out["saturation"].item() > 0  # the stripe prior's margins of 0.03 are far below an equal share
    out["saturation"].backward()
    assert gen.denoiser.net[-1].bias.grad.abs().sum() > 0  # the barrier trains the denoiser's correction


def test_row_profile_says_where_the_activation_is():
    high, low = row_profile(_person_map(0), bins=4), row_profile(_person_map(8), bins=4)
    assert high[0].tolist() == pytest.approx([0.5, 0.5, -0.5, -0.5]) and low[0].tolist() == pytest.approx([-0.5, -0.5, 0.5, 0.5])
    # A map of fewer rows than bins: each row repeated.
    assert row_profile(_person_map(1, rows=2, height=1), bins=4)[0].tolist() == pytest.approx([-0.5, -0.5, 0.5, 0.5])


def test_follow_statistics_hand_case():
    """Parts at relative heights 0.25 and 0.75 of an aligned crop, moved exactly as three
    misalignments move them: correlation 1 and slope 1. Boxes that stay put: slope 0."""
    applied = torch.tensor([[0.1, 1.0, 0.0], [-0.1, 0.8, 0.0], [0.0, 1.2, 0.05]], dtype=torch.float64)
    centres = torch.tensor([0.25, 0.75], dtype=torch.float64)
    moved = 0.5 + applied[:, 1:2] * (centres - 0.5) + applied[:, :1]  # 3 x 2, image heights
    thetas = torch.zeros(3, 2, 6, dtype=torch.float64)
    thetas[..., 5] = 2 * moved - 1
    stats = follow_statistics(thetas, applied)
    # The statistic measures the move from each part's mean centre, which here is 0.25 / 0.75
    # shifted by the mean move; both are exact for a linear move.
    assert stats[:, 0].tolist() == pytest.approx([1.0, 1.0]) and stats[:, 1].tolist() == pytest.approx([1.0, 1.0], abs=0.05)
    still = thetas.clone()
    still[..., 5] = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    still[0, :, 5] += 1e-9  # not exactly constant, so the correlation is defined
    assert follow_statistics(still, applied)[:, 1].abs().max() < 1e-6


def test_band_patches_average_the_rows_a_band_covers():
    """A map of 4 rows with values 0, 1, 2, 3 (each over a quarter of the height): the band
    0.125-0.5 covers half of row 0 and all of row 1, so its average is (0.5 * 0 + 1 * 1) / 1.5;
    the band of the whole image averages all four rows. The average moves with the boundaries:
    of the band 0.125-0.45, lowering the bottom takes in more of row 1 and lowering the top
    leaves out more of row 0, and both raise it."""
    fmap = torch.arange(4.0).view(1, 1, 4, 1).expand(1, 2, 4, 3)
    top, bottom = torch.tensor([[0.125, 0.0]], requires_grad=True), torch.tensor([[0.5, 1.0]], requires_grad=True)
    parts = band_patches(fmap, top, bottom)
    assert parts[0, :, 0].tolist() == pytest.approx([1 / 1.5, 1.5])
    top, bottom = torch.tensor([[0.125]], requires_grad=True), torch.tensor([[0.45]], requires_grad=True)
    band_patches(fmap, top, bottom)[0, 0, 0].backward()
    average = 0.2 / 0.325  # 0.125 of row 0 (value 0), 0.2 of row 1 (value 1)
    assert bottom.grad.item() == pytest.approx((1 - average) / 0.325) and top.grad.item() == pytest.approx(average / 0.325)


def test_box_gap_hand_case():
    """Two images, one part each way: training boxes centred at 0.5 and 0.25 of the image height
    with heights 0.2 and 0.4, test boxes at 0.5 and 0.5 with heights 0.2 and 0.2: centre gaps 0
    and 0.25, height gaps 0 and 0.2; t 100 and 900 fall in the first and last t bin."""
    from projects.PISL.tools.box_gap import gap_table

    def boxes(centres, heights):  # one part: full width, centre and half-height in map units
        return torch.tensor([[1.0, 0, 0, 0, h, 2 * c - 1] for c, h in zip(centres, heights)])

    _, record = gap_table(boxes([0.5, 0.25], [0.2, 0.4]), boxes([0.5, 0.5], [0.2, 0.2]), torch.tensor([100, 900]))
    assert record["all t/part0"]["centre mean"] == pytest.approx(0.125)
    assert record["all t/part0"]["height mean"] == pytest.approx(0.1)
    assert record["t in [0, 250)/part0"]["centre mean"] == pytest.approx(0.0)
    assert record["t in [750, 1000)/part0"]["centre mean"] == pytest.approx(0.25)
    assert "t in [250, 750)/part0" not in record
