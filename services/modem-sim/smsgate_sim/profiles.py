"""Quirk profiles: the ways real modem families differ from the 27.005/27.007 text.

Each profile names where its quirks are documented; docs/modems.md has the whole table
(family x quirk x source). A profile only describes; modem.py, general.py and sms.py act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UssdStyle = Literal["text", "packed", "ucs2"]
BusyKind = Literal["cms", "cme"]

# How AT+CCID, AT+ICCID and friends answer: command name -> the line ("{}" is the ICCID).
Iccid = tuple[tuple[str, str], ...]
STANDARD_ICCID: Iccid = (("+CCID", "+CCID: {}"), ("+ICCID", "+ICCID: {}"))


@dataclass(frozen=True, slots=True)
class Profile:
    """What one modem family does differently; `standard` follows the specifications."""

    name: str
    manufacturer: str
    model: str
    source: str = "3GPP TS 27.005 / 27.007"
    prompt: bytes = b"\r\n> "
    unsupported: str = "ERROR"  # final result for a command the firmware does not know
    first_index: int = 1  # storage indexes start here (Huawei and Quectel count from 0)
    cpin_ok: bool = True  # Wavecom answers AT+CPIN? without a final OK
    iccid: Iccid = STANDARD_ICCID
    rssi_every: float | None = None  # seconds between unsolicited ^RSSI reports (until ^CURC=0)
    # Lines the firmware prints after RDY at power-on, and once its SIM and SMS store are ready.
    boot_urcs: tuple[str, ...] = ()
    ready_urcs: tuple[str, ...] = ()
    # Seconds after power-on (and after the radio is switched on) during which SMS commands
    # answer "busy" with this error; `busy_all` extends that to every command but the basics.
    sms_busy: float = 0.0
    busy_error: tuple[BusyKind, int] = ("cms", 314)
    busy_all: bool = False
    radio_at_boot: int = 1  # AT+CFUN state after power-on (ZTE sticks start offline: 4)
    # The AT+CNMI values the firmware accepts, and what it starts with.
    cnmi_mt: tuple[int, ...] = (0, 1, 2, 3)
    cnmi_ds: tuple[int, ...] = (0, 1, 2)
    cnmi_bfr: tuple[int, ...] = (0, 1)
    cnmi_default: tuple[int, int, int, int, int] = (2, 1, 0, 0, 0)
    # Unsolicited lines printed now and then, also in the middle of a reply or at the prompt.
    chatter: tuple[str, ...] = ()
    chatter_every: float | None = None
    indication_memory: str | None = None  # the <mem> +CMTI names (Neoway: "MT", SIM and ME)
    ussd: UssdStyle = "text"  # how +CUSD strings travel (Huawei: packed GSM 7-bit as hex)
    pdu_mode: bool = True  # False: AT+CMGF=0 is refused, the modem works in text mode only


def _iccid(*pairs: tuple[str, str]) -> Iccid:
    return tuple(pairs)


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", "SMSGATE", "SIM-LTE"),
    # Several SIMCom/Telit firmwares end the prompt with a line break instead of a space.
    "noprompt-space": Profile("noprompt-space", "SMSGATE", "SIM-LTE-NP", prompt=b"\r\n>\r\n"),
    # Huawei sticks (E173, E3372 in stick mode, MS2131): ^ICCID, 0-based storage, their own
    # "not supported", ^RSSI chatter until ^CURC=0, and USSD as packed GSM 7-bit hex
    # (gammu libgammu/gsmphones.c: F_SMS_LOCATION_0 + F_ENCODED_USSD for E173/E3372;
    # ModemManager src/plugins/huawei: ^ICCID?, USSD encode/decode).
    "huawei": Profile(
        "huawei",
        "huawei",
        "E3372",
        source="gammu gsmphones.c; ModemManager plugins/huawei",
        unsupported="COMMAND NOT SUPPORT",
        first_index=0,
        iccid=_iccid(("^ICCID", "^ICCID: {}")),
        rssi_every=15.0,
        ussd="packed",
    ),
    # Wavecom/Sierra Fastrack: +CPIN: READY comes without OK (ModemManager plugins/wavecom,
    # gammu F_CPIN_NO_OK), +CCID is quoted, and right after power-on AT+CPMS answers
    # +CME ERROR: 515 "please wait" (gammu issue #93).
    "wavecom": Profile(
        "wavecom",
        "WAVECOM MODEM",
        "MULTIBAND 900E 1800",
        source="ModemManager plugins/wavecom; gammu gsmphones.c F_CPIN_NO_OK; gammu#93",
        cpin_ok=False,
        iccid=_iccid(("+CCID", '+CCID: "{}"'), ("+ICCID", '+CCID: "{}"')),
        boot_urcs=("+WIND: 3",),
        ready_urcs=("+WIND: 4",),
        sms_busy=1.0,
        busy_error=("cme", 515),
    ),
    # Quectel EC25/EG25/BG96: +QUSIM and +QIND: SMS DONE after boot, SMS commands busy
    # until then; 0-based indexes; ICCID by AT+QCCID; <ds>=1 refused although listed
    # (ModemManager plugins/quectel +QUSIM; src/mm-broadband-modem.c cnmi_sequence note
    # on Qualcomm-based devices).
    "quectel": Profile(
        "quectel",
        "Quectel",
        "EC25",
        source="ModemManager plugins/quectel, mm-broadband-modem.c; Quectel EC2x AT manual",
        first_index=0,
        iccid=_iccid(("+QCCID", "+QCCID: {}")),
        boot_urcs=("+CFUN: 1", "+CPIN: READY", "+QUSIM: 1"),
        ready_urcs=("+QIND: SMS DONE", "+QIND: PB DONE"),
        sms_busy=1.0,
        cnmi_ds=(0, 2),
    ),
    # SIMCom SIM800: "Call Ready"/"SMS Ready" at boot, AT+CCID answers bare digits with a
    # lower-case f pad, no <ds>=2 (reports come as +CDS), USSD answered in UCS-2 hex
    # (SIM800 Series AT Command Manual V1.09 §19.3; python-gsmmodem PR #76;
    # github.com/Linch1/SIM800L README).
    "simcom-sim800": Profile(
        "simcom-sim800",
        "SIMCOM_Ltd",
        "SIMCOM_SIM800L",
        source="SIM800 AT Command Manual V1.09; python-gsmmodem PR #76",
        iccid=_iccid(("+CCID", "{}f")),
        boot_urcs=("+CFUN: 1", "+CPIN: READY"),
        ready_urcs=("Call Ready", "SMS Ready"),
        sms_busy=0.5,
        cnmi_ds=(0, 1),
        ussd="ucs2",
    ),
    # SIMCom SIM7600 (and SIM7100): ICCID only by AT+CICCID, answered +ICCID:; SMS DONE and
    # PB DONE at boot; 0-based indexes (teslafields/general-at-stack src/SIM7100X.h).
    "simcom-sim7600": Profile(
        "simcom-sim7600",
        "SIMCOM INCORPORATED",
        "SIMCOM_SIM7600E-H",
        source="SIM7500/7600 AT manual; general-at-stack SIM7100X.h",
        first_index=0,
        iccid=_iccid(("+CICCID", "+ICCID: {}")),
        boot_urcs=("+CPIN: READY",),
        ready_urcs=("SMS DONE", "PB DONE"),
        sms_busy=0.5,
    ),
    # ZTE MF-series sticks: start offline until told to go online (gammu atgen.c ZTE init
    # "stay online"), the SIM is busy again after the radio comes on, and +ZUSIMR:2 floods
    # (ModemManager plugins/zte mm-common-zte.c, mm-broadband-modem-zte.c).
    "zte": Profile(
        "zte",
        "ZTE CORPORATION",
        "MF667",
        source="gammu atgen.c F_ZTE_INIT; ModemManager plugins/zte",
        radio_at_boot=4,
        sms_busy=1.0,
        chatter=("+ZUSIMR:2", '+ZPASR: "UMTS"'),
        chatter_every=2.0,
    ),
    # Sierra Wireless AirPrime (MC73xx): ICCID by AT!ICCID? (ModemManager
    # plugins/sierra/mm-sim-sierra.c); "!" is a prefix no standard parser expects.
    "sierra": Profile(
        "sierra",
        "Sierra Wireless, Incorporated",
        "MC7304",
        source="ModemManager plugins/sierra/mm-sim-sierra.c",
        iccid=_iccid(("!ICCID", "!ICCID: {}")),
    ),
    # Telit LE910/HE910: #QSS SIM status URCs, SMS busy until #QSS: 3; ICCID by AT#CCID
    # or AT+ICCID, not AT+CCID (ModemManager plugins/telit #QSS; sixfab core_manager
    # helpers/modem_support/telit.py).
    "telit": Profile(
        "telit",
        "Telit",
        "LE910-EU V2",
        source="ModemManager plugins/telit; Telit LE910 V2 AT reference; sixfab telit.py",
        iccid=_iccid(("#CCID", "#CCID: {}"), ("+ICCID", "+ICCID: {}")),
        boot_urcs=("#QSS: 1",),
        ready_urcs=("#QSS: 3",),
        sms_busy=1.0,
        prompt=b"\r\n>\r\n",
    ),
    # u-blox SARA/TOBY: "SIM busy" for seconds after power-on, even to commands that do not
    # touch the SIM (u-blox/ubxlib issue #287).
    "ublox": Profile(
        "ublox",
        "u-blox",
        "SARA-U201",
        source="u-blox/ubxlib#287; u-blox AT commands manual",
        sms_busy=1.0,
        busy_error=("cme", 14),
        busy_all=True,
    ),
    # Fibocom L610 (Unisoc): new SMS go straight to the TE (+CMT/+CDS), <mt>=1 refused,
    # no SR memory in its listing (Fibocom L610 / L8 AT manuals, AT+CNMI and AT+CPMS).
    "fibocom": Profile(
        "fibocom",
        "Fibocom",
        "L610",
        source="Fibocom L610/L8 AT command manuals (+CNMI, +CPMS)",
        cnmi_mt=(0, 2),
        cnmi_ds=(0, 1),
        cnmi_default=(1, 0, 0, 0, 0),
    ),
    # Cinterion (Gemalto/Thales) EHS5/BGS2: ^SYSSTART at boot, ICCID by AT^SCID, <bfr>
    # only 1 (ModemManager plugins/cinterion builds +CNMI from what =? lists and sets
    # bfr 1; BGS2T AT Command Set).
    "cinterion": Profile(
        "cinterion",
        "Cinterion",
        "EHS5-E",
        source="ModemManager plugins/cinterion; Cinterion BGS2T/EHS5 AT Command Set",
        iccid=_iccid(("^SCID", "^SCID: {}")),
        boot_urcs=("^SYSSTART",),
        cnmi_bfr=(1,),
    ),
    # Neoway N720/M590/M660: prints MODEM:STARTUP and +PBREADY, ICCID by AT$MYCCID, and
    # announces new SMS as +CMTI: "MT",<index> (Neoway M590 AT Command Sets V3.0; Neoway
    # M660 AT Command Set, AT+CNMI <mt>=1).
    "neoway": Profile(
        "neoway",
        "Neoway",
        "N720",
        source="Neoway M590 AT Command Sets V3.0; Neoway N58 AT Commands Manual",
        iccid=_iccid(("$MYCCID", '$MYCCID: "{}"')),
        indication_memory="MT",
        boot_urcs=("MODEM:STARTUP",),
        ready_urcs=("+PBREADY",),
        sms_busy=0.5,
    ),
    # Longsung U9300/U8300: $MY-prefixed vendor commands ($MYCCID, quoted), indexes from 0
    # (Longsung AT manual; $MYCCID as the Unisoc 8910 AT engine answers it).
    "longsung": Profile(
        "longsung",
        "LONGSUNG",
        "U9300C",
        source="Longsung U9300 AT manual; Unisoc AT engine $MYCCID",
        iccid=_iccid(("$MYCCID", '$MYCCID: "{}"')),
        first_index=0,
    ),
    # Option GlobeTrotter: _OSSYSI/_OCTI URCs whose "_" prefix no standard parser expects,
    # storage counted from 0 (ModemManager plugins/option; gammu gsmphones.c GlobeTrotter
    # F_SMS_LOCATION_0).
    "option": Profile(
        "option",
        "Option N.V.",
        "GlobeTrotter HSDPA Modem",
        source="ModemManager plugins/option; gammu gsmphones.c",
        first_index=0,
        chatter=("_OSSYSI: 2", "_OCTI: 1", "_OUWCTI: 4"),
        chatter_every=1.5,
    ),
    # AI-Thinker A6/A7 (and other cheap modules): text mode only, AT+CMGF=0 refused
    # (oakkar7/ATester#1; vshymanskyy/TinyGSM#242).
    "ai-thinker": Profile(
        "ai-thinker",
        "AI-THINKER",
        "A6",
        source="oakkar7/ATester#1; TinyGSM#242",
        pdu_mode=False,
    ),
}


def profile(name: str) -> Profile:
    """The profile called `name`; ValueError names the ones that exist."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown modem profile {name!r}; expected one of {sorted(PROFILES)}"
        ) from None
