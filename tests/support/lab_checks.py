"""Each teaching lab's own outcome: an expression read in the lab's namespace after Run All and the assertions on its
value. The check cell is appended to an executed copy, never to the lab; it prints `CHECK {json}`. Used by the
nbclient run (classroom/test_examples.py), the browser's Run All (browser/test_browser_labs.py) and the hub's."""
import json
from pathlib import Path

from notebook_ui import cell_outputs, text_of

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.ipynb"))

# lab -> (expression evaluated in the lab's namespace after it ran, assertions on its value)
CHECKS = {
    "00_quickstart": ("{'status': xor.status, 'loss': xor.loss, 'steer': steer.status, 'pace': steer.pace}",
                      lambda r: r["status"] == "finished" and r["loss"] < 0.05
                      and r["steer"] == "running" and r["pace"] == 30),  # left training, slowly, to steer by hand
    "01_reverse_accumulation": (
        "{'max_error': max(errors), 'steps': len(steps), 'order': [s.node for s in steps], 'loss': line.loss,"
        " 'w': float(line.params['w'][0, 0]), 'b': float(line.params['b'][0])}",  # the exercise reuses b
        lambda r: (r["max_error"] < 1e-7 and r["order"] == ["e3", "e2", "e1", "e0"] and r["loss"] < 0.01
                   and abs(r["w"] - 3) < 0.1 and abs(r["b"] + 0.5) < 0.1)),
    "02_gradient_checking": (
        "{'wrong': bool(wrong), 'right': bool(right), 'right_2nd': bool(right_2nd), 'best32': best32,"
        " 'best64': best64, 'loss': fit.loss, 'checked': checked.status}",
        lambda r: (not r["wrong"] and r["right"] and r["right_2nd"] and r["best64"] < 1e-9
                   and r["best32"] > 100 * r["best64"] and r["loss"] < 0.01 and r["checked"] == "finished")),
    "03_xor_and_encoder": (
        "{'xor': xor.loss, 'xor_right': bool(((output > 0.5) == (Y > 0.5)).all()), 'codes': distinct_codes,"
        " 'encoder': encoder.loss}",
        lambda r: r["xor"] < 0.05 and r["xor_right"] and r["codes"] == 8 and r["encoder"] < 0.05),
    "04_vanishing_gradients": (
        "{'sigmoid10': ratios['sigmoid'][10], 'relu10': ratios['relu, He init'][10],"
        " 'small10': ratios['relu, small init'][10],"
        " 'six': deep_sigmoid.history['grad_norm/1'][0] / deep_sigmoid.history['grad_norm/6'][0]}",
        lambda r: r["sigmoid10"] < 1e-3 and r["relu10"] > 0.1 and r["small10"] < 0.1 and r["six"] < 0.05),
    "05_learning_rate_live": (
        "{'calm': calm, 'wild': wild, 'recovered': recovered, 'status': live.status,"
        " 'rates': sorted(set(live.history['lr'])), 'play': play.status}",
        lambda r: (r["wild"] > 5 * r["calm"] and r["recovered"] < r["wild"] / 3 and r["status"] == "stopped"
                   and r["rates"] == [0.1, 2.0] and r["play"] == "running")),  # left training for the teacher
    "06_convnet_digits": ("{'accuracy': test_accuracy, 'loss': cnn.loss, 'layers': list(cnn.layers)}",
                          lambda r: r["accuracy"] > 0.9 and r["layers"] == ["1", "2", "3"]),
    "07_char_language_model": (
        "{'first': first_loss, 'final': final_loss, 'sample': trained_sample[8:], 'held_best': min(held_out),"
        " 'held_last': held_out[-1], 'epochs': len(held_out), 'unclipped': last_loss(unclipped),"
        " 'clipped': last_loss(clipped), 'engaged': engaged}",
        # it learns, the held-out loss shows it memorising (lowest early, higher at the end), and clipping tames
        # momentum's large steps
        lambda r: (r["first"] > 3.5 and r["final"] < 1.5 and r["sample"].count(" ") > 20 and r["epochs"] == 40
                   and r["held_best"] < 3.0 and r["held_last"] > r["held_best"] + 0.3
                   and r["clipped"] < 0.8 * r["unclipped"] and 0.05 < r["engaged"] < 0.9)),
    "08_backprop_through_time": (
        "{'untrained': untrained, 'trained': trained, 'unclipped': unclipped_distance, 'clipped': clipped_distance,"
        " 'exploded': float(gradient_norms(unclipped).max()), 'clipped_loss': clipped.loss,"
        " 'statuses': [steer.status, unclipped.status, clipped.status], 'per_step': {k: [float(v[0]), float(v[-1])]"
        " for k, v in per_step.items()}, 'repeats': [n for _, _, n in bp.viz.repeated_blocks(steer.graph.eqns)]}",
        # steering through 50 steps brings the carts 100× closer; the gradient at the first step vanishes for the
        # trained policy and explodes for the twitchy one; unclipped, the same larger rate throws the policy out
        # (its carts end far from the target), clipped it is stable and ends 100× closer
        lambda r: (r["untrained"] > 100 * r["trained"] and r["statuses"] == ["finished"] * 3
                   and r["per_step"]["trained"][0] < r["per_step"]["trained"][1]
                   and r["per_step"]["twitchy"][0] > 1e3 * r["per_step"]["twitchy"][1]
                   and r["exploded"] > 1e3 and r["unclipped"] > r["untrained"] / 2
                   and r["clipped"] < r["untrained"] / 100 and r["clipped_loss"] < 1e-3
                   and 50 in r["repeats"])),  # the graph's 50 time steps drawn as one block
    "09_depth_that_trains": (
        "{'plain': final_loss(plain), 'residual': final_loss(residual), 'normed': final_loss(normed), 'ratio': ratio,"
        " 'plain_grads': [gradient_at_start(plain, 'Ws[0]'), gradient_at_start(plain, 'Ws[49]')],"
        " 'normed_grads': [gradient_at_start(normed, 'Ws[0]'), gradient_at_start(normed, 'Ws[49]')],"
        " 'centred': final_loss(centred), 'layers': len(plain.layers)}",
        # the plain 50-layer net stays at chance (log 10), its first layer's gradient lost on the way down;
        # with residual connections and layer norm the same net learns, every layer receiving a gradient
        lambda r: (r["layers"] == 52 and r["plain"] > 2.2 and r["ratio"] > 4 and r["normed"] < 0.5
                   and r["plain_grads"][0] < 1e-10 * r["plain_grads"][1]
                   and r["normed_grads"][0] > 0.1 * r["normed_grads"][1] and r["centred"] < 0.6)),
    "10_gpus_and_workers": (
        "{'gap': gap, 'workers': parallel.describe_workers(), 'statuses': [single.status, parallel.status, "
        "steered.status], 'changed': [next(s for s, a, b in zip(h['step'][1:], h['lr'], h['lr'][1:]) if a != b) "
        "for h in steered.worker_histories()], 'rates': sorted(set(steered.history['lr'])), "
        "'averaged': float(np.mean(parallel.history['grad_norm/1'])), "
        "'each': [float(np.mean(parallel.history[f'worker{r}/grad_norm/1'])) for r in range(2)], "
        "'meets': sum('_workers.allreduce(' in line for line in str(parallel.step).splitlines())}",
        # 2 workers at 64 each train as one process at 128, to float32 rounding; one allreduce in the step; the
        # averaged gradient is smaller than each worker's own; a learning-rate change lands at one step on both
        lambda r: (r["gap"] < 1e-5 and r["workers"] == "2 workers · global batch 128"
                   and r["statuses"] == ["finished", "finished", "stopped"] and r["meets"] == 1
                   and r["averaged"] < min(r["each"]) and r["changed"][0] == r["changed"][1] > 1
                   and r["rates"] == [0.02, 0.1])),
}


def check_cell(lab: str) -> str:
    """The cell that prints the lab's outcome, appended after its last cell."""
    return f"import json as _json\nprint('CHECK', _json.dumps({CHECKS[lab][0]}))"


def read_check(printed: str):
    """The outcome the check cell printed, or None before it has."""
    return json.loads(printed.split("CHECK ", 1)[1]) if "CHECK " in printed else None


def checked_result(page):
    """The outcome the check cell printed on the page (the notebook's last cell), or None before it has."""
    return read_check("".join(text_of(o) for o in cell_outputs(page)[-1]["outputs"]))
