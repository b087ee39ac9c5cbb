"""Butcher tableaus of the explicit Runge–Kutta methods nodecli can integrate with.

Data only and torch-free: `TABLEAUS` is the one list of solver names (config validation,
--help and error messages read it), so importing it costs the CLI nothing.

Coefficients are plain Python floats so that the solver can fold them into scalar
`alpha=` arguments once, instead of casting tableau tensors on every step.

Conventions (s = number of stages):

* ``c[i]`` node of stage i, ``a[i]`` the i coefficients a_ij (j < i) of stage i
  (``a[0] == ()``), ``b`` the weights of the propagated solution.
* ``b_err = b - b_hat``: weights of the embedded error estimate, so that the local
  error estimate of a step is ``h * sum_i b_err[i] * k_i``; ``None`` for fixed-step methods.
* ``dense[i][p]`` is the coefficient of θ**p in the continuous-extension weight b_i(θ),
  so that y(t0 + θh) ≈ y0 + h Σ_i b_i(θ) k_i, with b_i(1) = b_i. ``None`` when the
  method has no own interpolant (`interpolate` then falls back to cubic Hermite).
* ``fsal``: the last stage is evaluated at (t0 + h, y1), so its k is the first stage
  of the next step ("first same as last").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import mul

Coeffs = tuple[float, ...]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method; `order` is the order of the propagated solution.

    For adaptive methods the step-size controller uses the exponent 1/order (as torchdiffeq
    does): the local error estimate of a p(p-1) pair behaves like h**p.
    """

    name: str
    order: int
    c: Coeffs
    a: tuple[Coeffs, ...]
    b: Coeffs
    b_err: Coeffs | None
    adaptive: bool
    fsal: bool
    dense: tuple[Coeffs, ...] | None

    def __post_init__(self) -> None:
        # Typos in long decimal expansions are the likeliest bug here; catch them at import.
        s = len(self.c)
        if len(self.a) != s or len(self.b) != s:
            raise ValueError(f"{self.name}: c, a and b must all have {s} stages")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"{self.name}: a[{i}] must have {i} entries")
            if abs(sum(row) - self.c[i]) > 1e-12:
                raise ValueError(f"{self.name}: row sum of a[{i}] != c[{i}]")
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError(f"{self.name}: weights b must sum to 1")
        if self.adaptive != (self.b_err is not None):
            raise ValueError(f"{self.name}: adaptive methods need b_err and vice versa")
        if self.b_err is not None and (len(self.b_err) != s or abs(sum(self.b_err)) > 1e-12):
            raise ValueError(f"{self.name}: b_err must have {s} entries summing to 0")
        if self.fsal and not (
            self.c[-1] == 1.0 and self.b[-1] == 0.0 and self.a[-1] == self.b[:-1]
        ):
            raise ValueError(f"{self.name}: fsal needs last stage == (t0+h, y1)")
        if self.dense is not None:
            if len(self.dense) != s:
                raise ValueError(f"{self.name}: dense needs one polynomial per stage")
            for i, poly in enumerate(self.dense):
                if abs(sum(poly) - self.b[i]) > 1e-12:
                    raise ValueError(f"{self.name}: dense b_{i}(1) != b_{i}")

    @property
    def n_stages(self) -> int:
        """Number of stages s (including the FSAL stage)."""
        return len(self.c)


# --- Tsitouras 5(4) ----------------------------------------------------------------
# Ch. Tsitouras, "Runge–Kutta pairs of order 5(4) satisfying only the first column
# simplifying assumption", Comput. Math. Appl. 62 (2011) 770–775. Decimal values as in
# OrdinaryDiffEq.jl / diffrax (they round to the same doubles).
_T_B = (
    0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
    0.01,
    0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
    1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
    -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
    2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841,
)
_T_BHAT = (
    0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
    0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
    0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
    1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
    -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
    1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089,
    1.0 / 66.0,
)
_T_A = (
    (),
    (0.161,),
    (
        -0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
        0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569,
    ),
    (
        2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
        -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
        4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077,
    ),
    (
        5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
        -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
        7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
        -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635,
    ),
    (
        5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
        -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
        8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
        -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
        -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206,
    ),
    _T_B,
)
# Dense output b_i(θ) in expanded form (OrdinaryDiffEq's r_ij): a free 4th-order
# interpolant, i.e. local interpolation error O(h^5).
_T_DENSE = (
    (0.0, 1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
    (0.0, 0.0, 0.13169999999999998, -0.2234, 0.1017),
    (0.0, 0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
    (0.0, 0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
    (0.0, 0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
    (0.0, 0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
    (0.0, 0.0, 1.5, -4.0, 2.5),
)

TSIT5 = ButcherTableau(
    name="tsit5",
    order=5,
    c=(
        0.0,
        0.161,
        0.327,
        0.9,
        0.9800255409045096857298102862870245954942137979563024768854764293221195950761,
        1.0,
        1.0,
    ),
    a=_T_A,
    b=(*_T_B, 0.0),
    b_err=tuple(b - bh for b, bh in zip((*_T_B, 0.0), _T_BHAT, strict=True)),
    adaptive=True,
    fsal=True,
    dense=_T_DENSE,
)

# --- Dormand–Prince 5(4) ---------------------------------------------------------------
# Coefficients as in torchdiffeq's dopri5. Dense output: Hairer's DOPRI5 continuous
# extension (Shampine 1986 coefficients d_i) expanded into b_i(θ); its value at θ=1/2 is
# exactly torchdiffeq's DPS_C_MID. 4th order (local interpolation error O(h^5)).
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# The embedded 4th-order weights are the ones torchdiffeq uses (Shampine's variant, error
# weight -1/60 on the FSAL stage), so that both pick the same step sizes.
_DP_BHAT = (1951 / 21600, 0.0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60)

DOPRI5 = ButcherTableau(
    name="dopri5",
    order=5,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP_B,
    ),
    b=(*_DP_B, 0.0),
    b_err=tuple(b - bh for b, bh in zip((*_DP_B, 0.0), _DP_BHAT, strict=True)),
    adaptive=True,
    fsal=True,
    dense=(
        (0.0, 1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0, 0.0),
        (
            0.0,
            0.0,
            131558114200 / 32700410799,
            -68118460800 / 10900136933,
            87487479700 / 32700410799,
        ),
        (0.0, 0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (
            0.0,
            0.0,
            127303824393 / 49829197408,
            -318862633887 / 49829197408,
            701980252875 / 199316789632,
        ),
        (0.0, 0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
)

# --- Bogacki–Shampine 3(2) -------------------------------------------------------------
# FSAL, so f(t1, y1) is free and the natural interpolant is the cubic Hermite through
# (y0, f0, y1, f1), written here as b_i(θ) polynomials: 3rd order (local error O(h^4)).
_BS_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
_BS_BHAT = (7 / 24, 1 / 4, 1 / 3, 1 / 8)


def _hermite_dense(b: Coeffs) -> tuple[Coeffs, ...]:
    """b_i(θ) of the cubic Hermite interpolant of an FSAL method with weights b."""
    # y(θ) = y0 + (3θ²-2θ³)(y1-y0) + h(θ-2θ²+θ³) f0 + h(θ³-θ²) f1, with y1-y0 = hΣ b_i k_i.
    polys = [[0.0, 0.0, 3.0 * bi, -2.0 * bi] for bi in b]
    polys[0] = [p + q for p, q in zip(polys[0], (0.0, 1.0, -2.0, 1.0), strict=True)]
    polys[-1] = [p + q for p, q in zip(polys[-1], (0.0, 0.0, -1.0, 1.0), strict=True)]
    return tuple(tuple(p) for p in polys)


BOSH3 = ButcherTableau(
    name="bosh3",
    order=3,
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), _BS_B[:3]),
    b=_BS_B,
    b_err=tuple(b - bh for b, bh in zip(_BS_B, _BS_BHAT, strict=True)),
    adaptive=True,
    fsal=True,
    dense=_hermite_dense(_BS_B),
)

# --- Dormand–Prince 8(7) ---------------------------------------------------------------
# Prince & Dormand (1981) 13-stage pair exactly as in torchdiffeq's dopri8, which appends
# a 14th stage f(t1, y1) (FSAL). Dense output as torchdiffeq's: the quartic through y0,
# f0, y(t0 + h/2), y1 and f1, with y(t0 + h/2) = y0 + h Σ m_i k_i from torchdiffeq's
# midpoint weights m (5th order: Σ m_i c_i^(q-1) = (1/2)^q/q for q <= 5). A 4th-order
# interpolant (local error O(h^5)): far below the method's own 8th order, so between its
# long steps y(t) is read less accurately than at the step ends (docs/odeint.md).
_D8_A = (
    (),
    (1 / 18,),
    (1 / 48, 1 / 16),
    (1 / 32, 0.0, 3 / 32),
    (5 / 16, 0.0, -75 / 64, 75 / 64),
    (3 / 80, 0.0, 0.0, 3 / 16, 3 / 20),
    (
        29443841 / 614563906,
        0.0,
        0.0,
        77736538 / 692538347,
        -28693883 / 1125000000,
        23124283 / 1800000000,
    ),
    (
        16016141 / 946692911,
        0.0,
        0.0,
        61564180 / 158732637,
        22789713 / 633445777,
        545815736 / 2771057229,
        -180193667 / 1043307555,
    ),
    (
        39632708 / 573591083,
        0.0,
        0.0,
        -433636366 / 683701615,
        -421739975 / 2616292301,
        100302831 / 723423059,
        790204164 / 839813087,
        800635310 / 3783071287,
    ),
    (
        246121993 / 1340847787,
        0.0,
        0.0,
        -37695042795 / 15268766246,
        -309121744 / 1061227803,
        -12992083 / 490766935,
        6005943493 / 2108947869,
        393006217 / 1396673457,
        123872331 / 1001029789,
    ),
    (
        -1028468189 / 846180014,
        0.0,
        0.0,
        8478235783 / 508512852,
        1311729495 / 1432422823,
        -10304129995 / 1701304382,
        -48777925059 / 3047939560,
        15336726248 / 1032824649,
        -45442868181 / 3398467696,
        3065993473 / 597172653,
    ),
    (
        185892177 / 718116043,
        0.0,
        0.0,
        -3185094517 / 667107341,
        -477755414 / 1098053517,
        -703635378 / 230739211,
        5731566787 / 1027545527,
        5232866602 / 850066563,
        -4093664535 / 808688257,
        3962137247 / 1805957418,
        65686358 / 487910083,
    ),
    (
        403863854 / 491063109,
        0.0,
        0.0,
        -5068492393 / 434740067,
        -411421997 / 543043805,
        652783627 / 914296604,
        11173962825 / 925320556,
        -13158990841 / 6184727034,
        3936647629 / 1978049680,
        -160528059 / 685178525,
        248638103 / 1413531060,
        0.0,
    ),
)
_D8_B = (
    14005451 / 335480064,
    0.0,
    0.0,
    0.0,
    0.0,
    -59238493 / 1068277825,
    181606767 / 758867731,
    561292985 / 797845732,
    -1041891430 / 1371343529,
    760417239 / 1151165299,
    118820643 / 751138087,
    -528747749 / 2220607170,
    1 / 4,
)
_D8_BHAT = (
    13451932 / 455176623,
    0.0,
    0.0,
    0.0,
    0.0,
    -808719846 / 976000145,
    1757004468 / 5645159321,
    656045339 / 265891186,
    -3867574721 / 1518517206,
    465885868 / 322736535,
    53011238 / 667516719,
    2 / 45,
    0.0,
)

_D8_MID = (
    0.04103130360739393,
    0.0,
    0.0,
    0.0,
    0.0,
    0.05100562801991382,
    0.2388930677412202,
    0.3096870143996103,
    -0.2172325471755352,
    0.07833405679331928,
    -0.0018614369715579948,
    0.007072844202678841,
    0.00690847373200576,
    -0.013838404349047373,
)


def _quartic_dense(b: Coeffs, mid: Coeffs) -> tuple[Coeffs, ...]:
    """b_i(θ) of the quartic through y0, f0 = k_0, y(½) = y0 + hΣ mid_i k_i, y1 and
    f1 = k_last (an FSAL method), written as polynomials in θ (y0 cancels out)."""
    last = len(b) - 1
    polys = []
    for i, (bi, mi) in enumerate(zip(b, mid, strict=True)):
        d0, d1 = float(i == 0), float(i == last)
        polys.append(
            (
                0.0,
                d0,
                d1 - 4.0 * d0 - 5.0 * bi + 16.0 * mi,
                5.0 * d0 - 3.0 * d1 + 14.0 * bi - 32.0 * mi,
                2.0 * d1 - 2.0 * d0 - 8.0 * bi + 16.0 * mi,
            )
        )
    return tuple(polys)


DOPRI8 = ButcherTableau(
    name="dopri8",
    order=8,
    c=(
        0.0,
        1 / 18,
        1 / 12,
        1 / 8,
        5 / 16,
        3 / 8,
        59 / 400,
        93 / 200,
        5490023248 / 9719169821,
        13 / 20,
        1201146811 / 1299019798,
        1.0,
        1.0,
        1.0,
    ),
    a=(*_D8_A, _D8_B),
    b=(*_D8_B, 0.0),
    b_err=(*(b - bh for b, bh in zip(_D8_B, _D8_BHAT, strict=True)), 0.0),
    adaptive=True,
    fsal=True,
    dense=_quartic_dense((*_D8_B, 0.0), _D8_MID),
)

# --- Fixed-step classics -------------------------------------------------------------------
# "rk4" is Kutta's 3/8 rule, the variant torchdiffeq's method="rk4" uses (smaller error
# constant than the textbook 1/6-1/3-1/3-1/6 scheme for one extra FLOP).
RK4 = ButcherTableau(
    name="rk4",
    order=4,
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(1 / 8, 3 / 8, 3 / 8, 1 / 8),
    b_err=None,
    adaptive=False,
    fsal=False,
    dense=None,
)

EULER = ButcherTableau(
    name="euler",
    order=1,
    c=(0.0,),
    a=((),),
    b=(1.0,),
    b_err=None,
    adaptive=False,
    fsal=False,
    dense=None,
)

MIDPOINT = ButcherTableau(
    name="midpoint",
    order=2,
    c=(0.0, 1 / 2),
    a=((), (1 / 2,)),
    b=(0.0, 1.0),
    b_err=None,
    adaptive=False,
    fsal=False,
    dense=None,
)

TABLEAUS: dict[str, ButcherTableau] = {
    t.name: t for t in (TSIT5, DOPRI5, BOSH3, DOPRI8, RK4, EULER, MIDPOINT)
}
ADAPTIVE_METHODS: tuple[str, ...] = tuple(sorted(n for n, t in TABLEAUS.items() if t.adaptive))
FIXED_METHODS: tuple[str, ...] = tuple(sorted(n for n, t in TABLEAUS.items() if not t.adaptive))


def dense_weights(tableau: ButcherTableau, theta: float) -> Coeffs:
    """The continuous-extension weights b_i(θ) of a tableau with its own dense output."""
    if tableau.dense is None:
        raise ValueError(f"{tableau.name} has no own dense output")
    if TABLEAUS.get(tableau.name) is tableau:
        return _registered_dense_weights(tableau.name, theta)
    return _weights(tableau.dense, theta)


@lru_cache(maxsize=32)
def _registered_dense_weights(name: str, theta: float) -> Coeffs:
    """Cached by name and θ: gauss evaluates its Gauss–Legendre nodes (the same few θ) on
    every backward step, and a dense output is read ~20 times a batch."""
    dense = TABLEAUS[name].dense
    assert dense is not None
    return _weights(dense, theta)


def _weights(dense: tuple[Coeffs, ...], theta: float) -> Coeffs:
    # `map(mul, …)` sums the same products in the same order as a generator over zip, in
    # half the time (≈ 2.6 vs 5.7 µs for tsit5): the bits are the same.
    powers = [theta**j for j in range(len(dense[0]))]  # shared by every stage
    return tuple([sum(map(mul, poly, powers)) for poly in dense])
