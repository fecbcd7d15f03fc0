#!/usr/bin/env python3
"""Derives the Winograd F(m, 3) transform matrices used by kernels/src/winograd/transforms.rs.

Construction (Toom-Cook with the point at infinity, the convention of Lavin's wincnn):
for interpolation points p_0..p_{a-2} and infinity, a = m + 2,

  A^T[i][j] = p_j^i                  (j < a-1),  A^T[i][a-1] = [i == m-1]
  G[j][k]   = p_j^k / f_j            (j < a-1),  G[a-1][k]   = [k == 2]
  f_j       = prod_{l != j} (p_j - p_l)

and B^T is the unique matrix with  sum_j A^T[i][j] G[j][k] B^T[j][l] = [l == i + k]
for all i < m, k < 3, l < a, i.e. y = A^T [(G g) . (B^T d)] is the correlation
y_i = sum_k g_k d_{i+k}. It is solved here in exact rational arithmetic and checked.
Run: python3 scripts/winograd_matrices.py  (prints the Rust constants).
"""
from fractions import Fraction as F
import itertools, random

def solve(mat, rhs):
    # Least squares via normal equations in exact arithmetic (the system is consistent).
    n = len(mat[0])
    ata = [[sum(mat[r][i] * mat[r][j] for r in range(len(mat))) for j in range(n)] for i in range(n)]
    atb = [sum(mat[r][i] * rhs[r] for r in range(len(mat))) for i in range(n)]
    aug = [row[:] + [b] for row, b in zip(ata, atb)]
    for c in range(n):
        p = next(r for r in range(c, n) if aug[r][c] != 0)
        aug[c], aug[p] = aug[p], aug[c]
        for r in range(n):
            if r != c and aug[r][c] != 0:
                f = aug[r][c] / aug[c][c]
                aug[r] = [x - f * y for x, y in zip(aug[r], aug[c])]
    return [aug[i][n] / aug[i][i] for i in range(n)]

def matrices(m, points):
    r = 3
    a = m + r - 1
    assert len(points) == a - 1
    f = [F(1)] * a
    for j, pj in enumerate(points):
        prod = F(1)
        for l, pl in enumerate(points):
            if l != j:
                prod *= pj - pl
        f[j] = prod
    at = [[(points[j] ** i if j < a - 1 else F(int(i == m - 1))) for j in range(a)] for i in range(m)]
    g = [[(points[j] ** k / f[j] if j < a - 1 else F(int(k == r - 1))) for k in range(r)] for j in range(a)]
    bt = [[F(0)] * a for _ in range(a)]
    for l in range(a):
        rows, rhs = [], []
        for i in range(m):
            for k in range(r):
                rows.append([at[i][j] * g[j][k] for j in range(a)])
                rhs.append(F(int(l == i + k)))
        col = solve(rows, rhs)
        for j in range(a):
            bt[j][l] = col[j]
    # Check the identity exactly.
    for i, k, l in itertools.product(range(m), range(r), range(a)):
        s = sum(at[i][j] * g[j][k] * bt[j][l] for j in range(a))
        assert s == int(l == i + k), (m, i, k, l, s)
    # And on random data.
    d = [F(random.randint(-9, 9)) for _ in range(a)]
    w = [F(random.randint(-9, 9)) for _ in range(r)]
    u = [sum(g[j][k] * w[k] for k in range(r)) for j in range(a)]
    v = [sum(bt[j][l] * d[l] for l in range(a)) for j in range(a)]
    y = [sum(at[i][j] * u[j] * v[j] for j in range(a)) for i in range(m)]
    assert y == [sum(w[k] * d[i + k] for k in range(r)) for i in range(m)]
    return at, g, bt

def rust(name, mat):
    def lit(x):
        return f"{float(x)!r}" if x.denominator in (1, 2, 4, 8, 16, 32, 64) else f"{x.numerator}.0 / {x.denominator}.0"
    rows = ",\n    ".join("[" + ", ".join(lit(x) for x in row) + "]" for row in mat)
    return f"pub(crate) const {name}: [[f32; {len(mat[0])}]; {len(mat)}] = [\n    {rows},\n];"

if __name__ == "__main__":
    half = F(1, 2)
    for m, pts in [(2, [F(0), F(1), F(-1)]),
                   (4, [F(0), F(1), F(-1), F(2), F(-2)]),
                   (6, [F(0), F(1), F(-1), F(2), F(-2), half, -half])]:
        at, g, bt = matrices(m, pts)
        print(f"// F({m}x{m}, 3x3), points {{{', '.join(str(p) for p in pts)}, inf}}")
        print(rust(f"AT{m}", at)); print(rust(f"G{m}", g)); print(rust(f"BT{m}", bt)); print()
