"""The vocabulary of the synthetic grid: site names, groups, data tiers, CMS-like dataset names.

Everything here is fixed data or a pure function of a ``random.Random``; nothing depends on
dict or set iteration order of anything built at run time, nor on ``hash()``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

from dynamo_common.messages.types import OwnershipLevel, StorageType

# ---------------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------------

T1_CENTRES = (
    "T1_US_FNAL",
    "T1_IT_CNAF",
    "T1_DE_KIT",
    "T1_FR_CCIN2P3",
    "T1_ES_PIC",
    "T1_UK_RAL",
    "T1_RU_JINR",
)

T2_SITES = (
    "T2_US_MIT",
    "T2_DE_DESY",
    "T2_CH_CERN",
    "T2_FR_GRIF_IRFU",
    "T2_US_Nebraska",
    "T2_IT_Pisa",
    "T2_UK_London_IC",
    "T2_US_Caltech",
    "T2_US_Florida",
    "T2_US_Purdue",
    "T2_US_UCSD",
    "T2_US_Vanderbilt",
    "T2_US_Wisconsin",
    "T2_DE_RWTH",
    "T2_CH_CSCS",
    "T2_FR_GRIF_LLR",
    "T2_FR_IPHC",
    "T2_FR_CCIN2P3",
    "T2_IT_Bari",
    "T2_IT_Legnaro",
    "T2_IT_Rome",
    "T2_ES_CIEMAT",
    "T2_ES_IFCA",
    "T2_UK_London_Brunel",
    "T2_UK_SGrid_RALPP",
    "T2_UK_SGrid_Bristol",
    "T2_BE_IIHE",
    "T2_BE_UCL",
    "T2_BR_SPRACE",
    "T2_BR_UERJ",
    "T2_CN_Beijing",
    "T2_EE_Estonia",
    "T2_FI_HIP",
    "T2_GR_Ioannina",
    "T2_HU_Budapest",
    "T2_IN_TIFR",
    "T2_KR_KISTI",
    "T2_KR_KNU",
    "T2_PK_NCP",
    "T2_PL_Swierk",
    "T2_PL_Cyfronet",
    "T2_PT_NCG_Lisbon",
    "T2_RU_IHEP",
    "T2_RU_INR",
    "T2_RU_ITEP",
    "T2_RU_JINR",
    "T2_RU_PNPI",
    "T2_RU_SINP",
    "T2_TR_METU",
    "T2_TW_NCHC",
    "T2_UA_KIPT",
    "T2_AT_Vienna",
    "T2_CH_CSCS_HPC",
    "T2_US_Caltech_Ceph",
)

T3_SITES = (
    "T3_US_FNALLPC",
    "T3_US_Baylor",
    "T3_US_Colorado",
    "T3_US_Cornell",
    "T3_US_FIU",
    "T3_US_FIT",
    "T3_US_NotreDame",
    "T3_US_OSU",
    "T3_US_Princeton_ICSE",
    "T3_US_Rice",
    "T3_US_Rutgers",
    "T3_US_TAMU",
    "T3_US_TTU",
    "T3_US_UCD",
    "T3_US_UCR",
    "T3_US_UMD",
    "T3_US_UMiss",
    "T3_US_MIT",
    "T3_IT_Trieste",
    "T3_IT_Bologna",
    "T3_IT_Napoli",
    "T3_IT_Perugia",
    "T3_CH_PSI",
    "T3_KR_KNU",
    "T3_TW_NCU",
    "T3_TW_NTU_HEP",
    "T3_UK_London_QMUL",
    "T3_UK_SGrid_Oxford",
    "T3_UK_ScotGrid_GLA",
    "T3_FR_IPNL",
    "T3_CN_PKU",
    "T3_MX_Cinvestav",
    "T3_RU_FIAN",
    "T3_GR_IASA",
    "T3_HU_Debrecen",
    "T3_BY_NCPHEP",
    "T3_IN_TIFRCloud",
    "T3_ES_Oviedo",
)

# Invented institutes for grids larger than the real list (only reached beyond ~110 sites).
_EXTRA_INSTITUTES = (
    ("US", "Boulder"),
    ("US", "Austin"),
    ("US", "Ames"),
    ("US", "Tucson"),
    ("DE", "Hamburg"),
    ("DE", "Bonn"),
    ("IT", "Padova"),
    ("IT", "Torino"),
    ("FR", "Lyon"),
    ("FR", "Marseille"),
    ("ES", "Valencia"),
    ("UK", "Manchester"),
    ("CH", "Zurich"),
    ("BE", "Gent"),
    ("PL", "Krakow"),
    ("CZ", "Prague"),
    ("JP", "Tsukuba"),
    ("AU", "Melbourne"),
    ("CA", "Victoria"),
    ("CL", "Santiago"),
)


@dataclass(frozen=True, slots=True)
class SiteEntry:
    name: str
    tier: int
    storage_type: StorageType


def site_names(count: int) -> list[SiteEntry]:
    """``count`` CMS-like site names in a fixed order: the T0, pairs of T1 disk and tape
    endpoints, then T2s and T3s in a 62:38 mix, so that even a dozen sites make a grid with
    every kind of site."""
    out = [SiteEntry("T0_CH_CERN_Disk", 0, StorageType.DISK)]
    if count >= 40:
        out.append(SiteEntry("T0_CH_CERN_MSS", 0, StorageType.TAPE))
    pairs = min(len(T1_CENTRES), count // 6) if count >= 3 else 0
    for centre in T1_CENTRES[:pairs]:
        out.append(SiteEntry(f"{centre}_Disk", 1, StorageType.DISK))
        out.append(SiteEntry(f"{centre}_MSS", 1, StorageType.TAPE))
    rest = max(0, count - len(out))
    n_t2 = (rest * 62 + 99) // 100
    n_t3 = rest - n_t2
    out.extend(SiteEntry(n, 2, StorageType.DISK) for n in _names(T2_SITES, "T2", n_t2))
    out.extend(SiteEntry(n, 3, StorageType.DISK) for n in _names(T3_SITES, "T3", n_t3))
    return out[:count]


def _names(real: tuple[str, ...], tier: str, count: int) -> list[str]:
    names = list(real[:count])
    round_ = 1
    while len(names) < count:
        for country, city in _EXTRA_INSTITUTES:
            if len(names) == count:
                break
            suffix = "" if round_ == 1 else f"_{round_}"
            names.append(f"{tier}_{country}_{city}{suffix}")
        round_ += 1
    return names


def site_host(name: str) -> str:
    return f"xrootd.{name.lower().replace('_', '-')}.example"


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------

GROUPS: tuple[tuple[str, OwnershipLevel], ...] = (
    ("AnalysisOps", OwnershipLevel.DATASET),
    ("DataOps", OwnershipLevel.DATASET),
    ("FacOps", OwnershipLevel.BLOCK),
    ("IB_RelVal", OwnershipLevel.DATASET),
    ("local", OwnershipLevel.BLOCK),
)
"""Real groups, with ids 1.. in this order; id 0 is the implicit unowned group ``None``."""

GROUP_ID = {name: i + 1 for i, (name, _) in enumerate(GROUPS)}
NONE_ID = 0

# Partitions that get a quota on every site: the group partitions, and Physics, their union.
QUOTA_PARTITIONS = ("AnalysisOps", "DataOps", "IB_RelVal", "local")

# ---------------------------------------------------------------------------------------------
# Data tiers and file sizes
# ---------------------------------------------------------------------------------------------

MIN_FILE = 100_000_000
MAX_FILE = 4_000_000_000
JITTER_BITS = 24
"""A file's size is a quantile of its tier's distribution plus up to 16 MB of jitter, so that
two files hardly ever share a size."""


def _size_table(lo: int, hi: int, power: int, toward_high: bool) -> tuple[int, ...]:
    # Integer arithmetic only: a float quantile could round differently on another platform.
    hi -= 1 << JITTER_BITS
    den = 512**power
    table = []
    for i in range(256):
        off = (hi - lo) * (2 * i + 1) ** power // den
        table.append(hi - off if toward_high else lo + off)
    return tuple(table)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    share: int
    kind: str
    """``data``, ``mc`` or ``user``."""
    blocks: float
    """Relative number of blocks of its datasets."""
    files: float
    """Relative number of files of its blocks."""
    replicas: float
    """Relative number of dataset replicas beyond the first."""
    tape: bool
    """Datasets get a custodial copy on tape."""
    sizes: tuple[int, ...]
    """256 file-size quantiles."""


_NANO_MAX = 2_500_000_000

TIERS: tuple[Tier, ...] = (
    Tier("RAW", 3, "data", 2.5, 1.2, 0.3, True, _size_table(1_000_000_000, MAX_FILE, 3, True)),
    Tier("AOD", 4, "data", 2.0, 1.2, 0.7, True, _size_table(400_000_000, MAX_FILE, 2, True)),
    Tier("MINIAOD", 5, "data", 1.0, 1.0, 1.3, False, _size_table(200_000_000, MAX_FILE, 2, False)),
    Tier("NANOAOD", 4, "data", 0.5, 0.6, 1.4, False, _size_table(MIN_FILE, _NANO_MAX, 2, False)),
    Tier("AODSIM", 20, "mc", 1.2, 1.0, 0.8, False, _size_table(400_000_000, MAX_FILE, 1, False)),
    Tier(
        "MINIAODSIM", 26, "mc", 0.9, 1.0, 1.3, False, _size_table(200_000_000, MAX_FILE, 2, False)
    ),
    Tier("NANOAODSIM", 15, "mc", 0.5, 0.6, 1.4, False, _size_table(MIN_FILE, _NANO_MAX, 2, False)),
    Tier("GEN-SIM", 11, "mc", 1.0, 1.0, 0.5, False, _size_table(300_000_000, MAX_FILE, 1, False)),
    Tier("USER", 12, "user", 0.4, 0.5, 0.2, False, _size_table(MIN_FILE, MAX_FILE, 3, False)),
)
TIER_BY_NAME = {t.name: t for t in TIERS}

# ---------------------------------------------------------------------------------------------
# Dataset names
# ---------------------------------------------------------------------------------------------

_DATA_PRIMARY_NAMES = (
    "SingleMuon",
    "DoubleEG",
    "JetHT",
    "SingleElectron",
    "DoubleMuon",
    "MuonEG",
    "MET",
    "HTMHT",
    "Tau",
    "SinglePhoton",
    "DoublePhoton",
    "BTagCSV",
    "BTagMu",
    "Charmonium",
    "MuOnia",
    "DisplacedJet",
    "EGamma",
    "ZeroBias",
    "MinimumBias",
    "Commissioning",
    "NoBPTX",
    "HighMultiplicity",
    "HLTPhysics",
    "DoubleMuonLowMass",
    "AlCaLumiPixels",
    "AlCaPhiSym",
    "Cosmics",
    "ScoutingPFMonitor",
    "ScoutingCaloMuon",
)
# Primary datasets split into numbered copies, as CMS does for high-rate streams.
_DATA_PRIMARY_FAMILIES = (
    ("ParkingBPH", 1, 6),
    ("ZeroBias", 0, 9),
    ("EphemeralZeroBias", 1, 8),
    ("EphemeralHLTPhysics", 1, 8),
    ("ParkingDoubleMuonLowMass", 0, 7),
    ("ParkingSingleMuon", 0, 11),
    ("JetMET", 0, 1),
    ("Muon", 0, 1),
    ("EGamma", 0, 1),
)
DATA_PRIMARIES = _DATA_PRIMARY_NAMES + tuple(
    f"{stem}{i}" for stem, first, last in _DATA_PRIMARY_FAMILIES for i in range(first, last + 1)
)

ERAS: tuple[tuple[int, str], ...] = (
    (2016, "BCDEFGH"),
    (2017, "BCDEF"),
    (2018, "ABCD"),
    (2022, "CDEFG"),
    (2023, "BCD"),
)

# (processing string, CMSSW release series) by tier and year.
DATA_PROCESSING: dict[str, dict[int, tuple[tuple[str, str], ...]]] = {
    "RAW": {
        2016: (("", "8_0"),),
        2017: (("", "9_2"),),
        2018: (("", "10_1"),),
        2022: (("", "12_4"),),
        2023: (("", "13_0"),),
    },
    "AOD": {
        2016: (("07Aug17", "8_0"), ("23Sep2016", "8_0"), ("21Feb2020_UL2016", "10_6")),
        2017: (("17Nov2017", "9_4"), ("09Aug2019_UL2017", "10_6"), ("PromptReco", "9_2")),
        2018: (("17Sep2018", "10_2"), ("12Nov2019_UL2018", "10_6"), ("PromptReco", "10_1")),
        2022: (("27Jun2023", "12_4"), ("PromptReco", "12_4")),
        2023: (("22Sep2023", "13_0"), ("PromptReco", "13_0")),
    },
    "MINIAOD": {
        2016: (("17Jul2018", "8_0"), ("03Feb2017", "8_0"), ("UL2016_MiniAODv2", "10_6")),
        2017: (("31Mar2018", "9_4"), ("UL2017_MiniAODv2", "10_6"), ("09Aug2019_UL2017", "10_6")),
        2018: (("17Sep2018", "10_2"), ("UL2018_MiniAODv2", "10_6"), ("PromptReco", "10_2")),
        2022: (("27Jun2023", "12_4"), ("PromptReco", "12_4"), ("19Dec2023", "12_4")),
        2023: (("22Sep2023", "13_0"), ("PromptReco", "13_0"), ("19Dec2023", "13_0")),
    },
    "NANOAOD": {
        2016: (
            ("Nano1June2019", "10_2"),
            ("02Apr2020", "10_2"),
            ("UL2016_MiniAODv2_NanoAODv9", "10_6"),
        ),
        2017: (
            ("Nano25Oct2019", "10_2"),
            ("02Apr2020", "10_2"),
            ("UL2017_MiniAODv2_NanoAODv9", "10_6"),
        ),
        2018: (
            ("Nano25Oct2019", "10_2"),
            ("02Apr2020", "10_2"),
            ("UL2018_MiniAODv2_NanoAODv9", "10_6"),
        ),
        2022: (("22Sep2023", "12_6"), ("PromptNanoAODv10", "12_4"), ("19Dec2023", "12_6")),
        2023: (("22Sep2023", "13_0"), ("PromptNanoAODv12", "13_0"), ("19Dec2023", "13_0")),
    },
}

# (campaign, processing string, CMSSW release series, year) by tier.
MC_CAMPAIGNS: dict[str, tuple[tuple[str, str, str, int], ...]] = {
    "GEN-SIM": (
        ("RunIISummer15GS", "MCRUN2_71_V1", "7_1", 2016),
        ("RunIIFall17GS", "93X_mc2017_realistic_v3", "9_3", 2017),
        ("RunIISummer20UL16SIM", "106X_mcRun2_asymptotic_v13", "10_6", 2016),
        ("RunIISummer20UL17SIM", "106X_mc2017_realistic_v6", "10_6", 2017),
        ("RunIISummer20UL18SIM", "106X_upgrade2018_realistic_v11_L1v1", "10_6", 2018),
    ),
    "AODSIM": (
        (
            "RunIISummer16DR80Premix",
            "PUMoriond17_80X_mcRun2_asymptotic_2016_TrancheIV_v6",
            "8_0",
            2016,
        ),
        ("RunIIFall17DRPremix", "PU2017_94X_mc2017_realistic_v11", "9_4", 2017),
        ("RunIIAutumn18DRPremix", "102X_upgrade2018_realistic_v15", "10_2", 2018),
        ("RunIISummer20UL17RECO", "106X_mc2017_realistic_v6", "10_6", 2017),
        ("RunIISummer20UL18RECO", "106X_upgrade2018_realistic_v11_L1v1", "10_6", 2018),
    ),
    "MINIAODSIM": (
        (
            "RunIISummer16MiniAODv2",
            "PUMoriond17_80X_mcRun2_asymptotic_2016_TrancheIV_v6",
            "8_0",
            2016,
        ),
        ("RunIISummer16MiniAODv3", "PUMoriond17_94X_mcRun2_asymptotic_v3", "9_4", 2016),
        ("RunIIFall17MiniAODv2", "PU2017_12Apr2018_94X_mc2017_realistic_v14", "9_4", 2017),
        ("RunIIAutumn18MiniAOD", "102X_upgrade2018_realistic_v15", "10_2", 2018),
        ("RunIISummer20UL16MiniAODv2", "106X_mcRun2_asymptotic_v17", "10_6", 2016),
        ("RunIISummer20UL17MiniAODv2", "106X_mc2017_realistic_v9", "10_6", 2017),
        ("RunIISummer20UL18MiniAODv2", "106X_upgrade2018_realistic_v16_L1v1", "10_6", 2018),
    ),
    "NANOAODSIM": (
        (
            "RunIISummer16NanoAODv7",
            "PUMoriond17_Nano02Apr2020_102X_mcRun2_asymptotic_v8",
            "10_2",
            2016,
        ),
        (
            "RunIIFall17NanoAODv7",
            "PU2017_12Apr2018_Nano02Apr2020_102X_mc2017_realistic_v8",
            "10_2",
            2017,
        ),
        ("RunIIAutumn18NanoAODv7", "Nano02Apr2020_102X_upgrade2018_realistic_v21", "10_2", 2018),
        ("RunIISummer20UL16NanoAODv9", "106X_mcRun2_asymptotic_v17", "10_6", 2016),
        ("RunIISummer20UL17NanoAODv9", "106X_mc2017_realistic_v9", "10_6", 2017),
        ("RunIISummer20UL18NanoAODv9", "106X_upgrade2018_realistic_v16_L1v1", "10_6", 2018),
    ),
}

MC_PROCESSES = (
    "TTJets",
    "TTTo2L2Nu",
    "TTToSemiLeptonic",
    "TTToHadronic",
    "TTWJetsToLNu",
    "TTZToLLNuNu_M-10",
    "WJetsToLNu",
    "W1JetsToLNu",
    "W2JetsToLNu",
    "W3JetsToLNu",
    "WJetsToLNu_HT-100To200",
    "WJetsToLNu_HT-400To600",
    "WJetsToLNu_HT-600To800",
    "WJetsToLNu_HT-2500ToInf",
    "DYJetsToLL_M-50",
    "DYJetsToLL_M-10to50",
    "DYJetsToLL_M-50_HT-200to400",
    "DYJetsToLL_M-50_HT-800to1200",
    "ZJetsToNuNu_HT-100To200",
    "ZJetsToNuNu_HT-400To600",
    "GJets_HT-100To200",
    "GJets_HT-400To600",
    "QCD_Pt-15to7000",
    "QCD_Pt_170to300",
    "QCD_Pt_300to470",
    "QCD_Pt_1000to1400",
    "QCD_HT300to500",
    "QCD_HT500to700",
    "QCD_HT700to1000",
    "QCD_HT1000to1500",
    "QCD_HT2000toInf",
    "ST_t-channel_top_4f_inclusiveDecays",
    "ST_t-channel_antitop_4f_inclusiveDecays",
    "ST_tW_top_5f_inclusiveDecays",
    "ST_tW_antitop_5f_inclusiveDecays",
    "ST_s-channel_4f_leptonDecays",
    "WWTo2L2Nu",
    "WZTo3LNu",
    "WZTo2L2Q",
    "ZZTo4L",
    "ZZTo2L2Nu",
    "GluGluHToZZTo4L_M125",
    "GluGluHToGG_M125",
    "GluGluHToTauTau_M125",
    "VBFHToTauTau_M125",
    "VBFHToGG_M125",
    "ttHToNonbb_M125",
    "ttHTobb_M125",
    "ZH_HToBB_ZToLL_M125",
    "WminusH_HToBB_WToLNu_M125",
    "GluGluToContinToZZTo4mu",
    "MinBias",
    "JpsiToMuMu_JpsiPt8",
    "BsToMuMu",
    "BuToJpsiK",
    "ZprimeToTT_M-{m}_W-{w}",
    "RSGravitonToWW_M-{m}",
    "BulkGravToZZToZlepZhad_narrow_M-{m}",
    "HSCPgluino_M-{m}",
    "SMS-T1tttt_mGluino-{m}_mLSP-{l}",
    "DarkMatter_MonoZToLL_V_Mx-{l}_Mv-{m}",
)
MASSES = tuple(range(500, 6001, 250))
LSP_MASSES = (1, 50, 100, 200, 400, 600, 800, 1000)

TUNES: dict[int, tuple[str, ...]] = {
    2016: ("TuneCUETP8M1_13TeV", "TuneCUETP8M2T4_13TeV", "TuneCUETP8M1_13TeV_Photos"),
    2017: ("TuneCP5_13TeV", "TuneCP5_PSweights_13TeV", "TuneCP2_13TeV"),
    2018: ("TuneCP5_13TeV", "TuneCP5_PSweights_13TeV", "TuneCP5_13TeV_Photos"),
}
GENERATORS = (
    "madgraphMLM-pythia8",
    "amcatnloFXFX-pythia8",
    "powheg-pythia8",
    "pythia8",
    "madgraph-pythia8",
    "amcatnlo-pythia8",
    "powheg-JHUGenV7011-pythia8",
)

RELVAL_PRIMARIES = (
    "RelValTTbar_13",
    "RelValZMM_13",
    "RelValZEE_13",
    "RelValZTT_13",
    "RelValSingleMuPt10",
    "RelValSingleElectronPt35",
    "RelValQCD_FlatPt_15_3000HS_13",
    "RelValMinBias_13",
    "RelValH125GGgluonfusion_13",
    "RelValNuGun",
)
RELVAL_RELEASES = (
    ("10_6", "106X_upgrade2018_realistic_v4"),
    ("11_2", "112X_mcRun3_2021_realistic_v7"),
    ("12_4", "124X_mcRun3_2022_realistic_v10"),
    ("13_0", "130X_mcRun3_2023_realistic_v8"),
    ("14_0", "140X_mcRun3_2024_realistic_v3"),
)

USERS = (
    "jdoe",
    "asmith",
    "mliu",
    "kpatel",
    "rgarcia",
    "tnakamura",
    "lrossi",
    "fmueller",
    "cdubois",
    "aivanov",
    "sborisova",
    "hkim",
    "wzhang",
    "aalvarez",
    "ebrown",
    "jschmidt",
    "pcosta",
    "nnowak",
    "bozturk",
    "vsingh",
)
USER_WORK = (
    "skim_2mu",
    "ntuple_v3",
    "tnp_electrons",
    "dijet_trees",
    "btag_calib",
    "hgg_slim",
    "met_filters",
    "jetmet_study",
    "tau_embedding",
    "private_gen",
)


@dataclass(frozen=True, slots=True)
class DatasetEntry:
    name: str
    data_type: str
    software_version: str
    lfn_base: str
    """The directory under which its blocks' files go (CMS LFN convention)."""
    relval: bool = False


def _mc_primary(rng: random.Random, year: int) -> str:
    process = rng.choice(MC_PROCESSES)
    if "{" in process:
        m = rng.choice(MASSES)
        process = process.format(m=m, w=m // 100, l=rng.choice(LSP_MASSES))
    return f"{process}_{rng.choice(TUNES[year])}-{rng.choice(GENERATORS)}"


def dataset_name(tier: Tier, rng: random.Random, relval_share: float = 0.05) -> DatasetEntry:
    """A random CMS-like dataset of ``tier`` (not necessarily unique: the caller checks)."""
    version = 1 + int(rng.random() ** 4 * 3)
    if tier.kind == "data":
        primary = rng.choice(DATA_PRIMARIES)
        year, letters = rng.choice(ERAS)
        era = f"Run{year}{rng.choice(letters)}"
        processing, release = rng.choice(DATA_PROCESSING[tier.name][year])
        software = f"CMSSW_{release}_{rng.randrange(1, 30)}"
        if processing:
            processed = f"{era}-{processing}-v{version}"
            leaf = f"{processing}-v{version}"
        else:
            processed = f"{era}-v{version}"
            leaf = f"v{version}"
        return DatasetEntry(
            f"/{primary}/{processed}/{tier.name}",
            "data",
            software,
            f"/store/data/{era}/{primary}/{tier.name}/{leaf}",
        )
    if tier.kind == "mc" and rng.random() < relval_share:
        primary = rng.choice(RELVAL_PRIMARIES)
        release, global_tag = rng.choice(RELVAL_RELEASES)
        software = f"CMSSW_{release}_{rng.randrange(0, 12)}"
        leaf = f"{global_tag}-v{version}"
        return DatasetEntry(
            f"/{primary}/{software}-{leaf}/{tier.name}",
            "mc",
            software,
            f"/store/relval/{software}/{primary}/{tier.name}/{leaf}",
            relval=True,
        )
    if tier.kind == "mc":
        campaign, processing, release, year = rng.choice(MC_CAMPAIGNS[tier.name])
        primary = _mc_primary(rng, year)
        ext = rng.choice(("", "", "", "", "_ext1", "_ext2"))
        leaf = f"{processing}{ext}-v{version}"
        return DatasetEntry(
            f"/{primary}/{campaign}-{leaf}/{tier.name}",
            "mc",
            f"CMSSW_{release}_{rng.randrange(1, 30)}",
            f"/store/mc/{campaign}/{primary}/{tier.name}/{leaf}",
        )
    user = rng.choice(USERS)
    work = rng.choice(USER_WORK)
    digest = f"{rng.getrandbits(128):032x}"
    if rng.random() < 0.5:
        primary = rng.choice(DATA_PRIMARIES)
        data_type = "data"
    else:
        primary = _mc_primary(rng, rng.choice((2016, 2017, 2018)))
        data_type = "mc"
    release = rng.choice(("9_4", "10_2", "10_6", "12_4", "13_0"))
    return DatasetEntry(
        f"/{primary}/{user}-{work}-{digest}/USER",
        data_type,
        f"CMSSW_{release}_{rng.randrange(1, 30)}",
        f"/store/user/{user}/{primary}/{work}/{digest[:12]}",
    )


_NAME_VERSION = re.compile(r"v(\d+)(/[^/]+)$")
_LFN_VERSION = re.compile(r"v(\d+)$")


def next_version(dataset: DatasetEntry) -> DatasetEntry:
    """The same dataset processed once more (``-vN`` -> ``-vN+1``): how a taken name is made
    unique without drawing again."""

    def bump(match: re.Match[str]) -> str:
        return f"v{int(match.group(1)) + 1}{match.group(0)[len(match.group(1)) + 1 :]}"

    name, n = _NAME_VERSION.subn(bump, dataset.name)
    if not n:
        raise ValueError(f"{dataset.name} has no version to bump")
    return replace(
        dataset,
        name=name,
        lfn_base=_LFN_VERSION.sub(bump, dataset.lfn_base),
    )
