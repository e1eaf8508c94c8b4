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
