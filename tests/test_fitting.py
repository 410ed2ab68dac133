import torch

from dapper.fitting import EpochSampler, fit, warmup_cosine


def test_epoch_sampler_matches_a_plain_shuffled_loop():
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = []
    for _ in range(3):
        perm = torch.randperm(10, generator=a)
        plain += [perm[i:i + 3] for i in range(0, 10 - 3 + 1, 3)]
    sampler = EpochSampler(10, 3, b)
    assert sampler.steps(3) == len(plain) == 9
    assert all(torch.equal(sampler(i), p) for i, p in enumerate(plain))


def test_fit_runs_exactly_the_steps_and_learns():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen, rates = [], []

    def loss_fn(step):
        seen.append(step)
        rates.append(opt.param_groups[0]["lr"])
        return (model(x).squeeze(1) - y).square().mean()

    log = fit(loss_fn, opt, 120, lr=warmup_cosine(0.1, 120), progress=False, log_every=40)
    assert seen == list(range(120)) and log.steps == 120
    assert [s for s, _ in log.history] == [40, 80, 120]
    losses = [v for _, v in log.history]
    assert losses == sorted(losses, reverse=True)
    with torch.no_grad():
        assert float((model(x).squeeze(1) - y).square().mean()) < 1e-3
    assert rates[0] < rates[20] and rates[-1] < 0.01  # warm-up, then decay towards 0
