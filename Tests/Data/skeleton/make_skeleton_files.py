"""Writes the small files SkelLab's skeleton readers are tested on (layouts of methods.md §1.2).

    python3 make_skeleton_files.py      # needs numpy only; the outputs are committed
"""
import pickle

import numpy as np

rng = np.random.default_rng(5)

def clip(frames, bodies=2):
    """A (frames, bodies, 25, 3) clip whose value encodes its position: 100*body + joint + t/1000."""
    t = np.arange(frames)[:, None, None, None] / 1000.0
    m = np.arange(bodies)[None, :, None, None] * 100.0
    v = np.arange(25)[None, None, :, None]
    c = np.arange(3)[None, None, None, :] * 0.1
    return (m + v + c + t + 1).astype(np.float32)

# 1. MAMP .npz: x (n, 300, 150), frame values ordered body x joint x xyz; y one-hot float64.
def mamp(lengths, labels, classes):
    x = np.zeros((len(lengths), 300, 150), np.float32)
    for i, n in enumerate(lengths):
        x[i, :n] = clip(n).reshape(n, 150)
    y = np.zeros((len(lengths), classes), np.float64)
    y[np.arange(len(lengths)), labels] = 1
    return x, y
x_train, y_train = mamp([120, 300, 64], [0, 3, 4], 5)
x_test, y_test = mamp([90, 10], [2, 1], 5)
x_train[1, 5:8] = 0  # a gap inside the clip does not shorten it
np.savez("mamp_tiny.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
np.savez_compressed("mamp_tiny_deflated.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

# 2. AGCN: data (n, 3, 300, 25, 2), num_frame (n,), label pickle (names, labels).
data = np.zeros((3, 3, 300, 25, 2), np.float32)
lengths = [50, 300, 7]
for i, n in enumerate(lengths):
    data[i, :, :n] = clip(n).transpose(3, 0, 2, 1)
np.save("agcn_train_data_joint.npy", data)
np.save("agcn_train_num_frame.npy", np.array([50, 320, 7], np.int64))  # PKU lengths may exceed 300
names = ["S001C001P001R001A001.skeleton", "S002C002P003R002A010.skeleton", "S001C003P008R001A058.skeleton"]
with open("agcn_train_label.pkl", "wb") as f:
    pickle.dump((names, [0, np.int64(9), 57]), f)
np.save("agcn_train_label.npy", np.array([0, 9, 57], np.int64))

# 3. PYSKL 3danno: split lists and annotations with keypoint (M, T, V, 3).
annotations = []
for i, (n, m, label) in enumerate([(40, 1, 3), (95, 2, 7), (12, 1, 0)]):
    annotations.append({"frame_dir": f"S00{i+1}C001P00{i+1}R001A00{label+1}", "label": label,
                        "keypoint": clip(n, m).transpose(1, 0, 2, 3).copy(), "total_frames": n})
split = {"xsub_train": [a["frame_dir"] for a in annotations[:2]], "xsub_val": [annotations[2]["frame_dir"]]}
with open("pyskl_tiny_3danno.pkl", "wb") as f:
    pickle.dump({"split": split, "annotations": annotations}, f)

# 4. PKU-MMD Part I: one sequence of 80 frames (150 values per line), a label file with
#    (label 1-based, start, end, confidence) rows.
seq = clip(80).reshape(80, 150)
with open("pkummd_0002-L.txt", "w") as f:
    for row in seq:
        f.write(" ".join(f"{v:.6f}" for v in row) + "\n")
with open("pkummd_0002-L_label.txt", "w") as f:
    f.write("3,10,40,1\n12,45,80,2\n")
print("written")
