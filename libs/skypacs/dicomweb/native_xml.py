"""DICOM JSON data sets as PS3.19 Native DICOM Model XML (PS3.19 A.1).

Used wherever a client asks for ``multipart/related; type="application/dicom+xml"``
(QIDO-RS results, WADO-RS metadata): one ``NativeDicomModel`` document per
data set. Person names are split into their component groups and components
(PS3.19 A.1.5); sequences become ``Item`` elements; bulk data references become
``BulkData`` elements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from xml.etree import ElementTree as ET

from pydicom.datadict import keyword_for_tag

NAMESPACE: Final = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_GROUPS: Final = ("Alphabetic", "Ideographic", "Phonetic")
_COMPONENTS: Final = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def _keyword(tag: str) -> str | None:
    try:
        return keyword_for_tag(int(tag, 16)) or None
    except ValueError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _person_name(parent: ET.Element, number: int, value: Any) -> None:
    name = ET.SubElement(parent, "PersonName", number=str(number))
    groups = value if isinstance(value, Mapping) else {"Alphabetic": str(value)}
    for group in _GROUPS:
        text = groups.get(group)
        if not text:
            continue
        node = ET.SubElement(name, group)
        for component, part in zip(_COMPONENTS, str(text).split("^"), strict=False):
            if part:
                ET.SubElement(node, component).text = part


def _attribute(parent: ET.Element, tag: str, element: Mapping[str, Any]) -> None:
    vr = str(element.get("vr", "UN"))
    node = ET.SubElement(parent, "DicomAttribute", {"tag": tag, "vr": vr})
    keyword = _keyword(tag)
    if keyword:
        node.set("keyword", keyword)
    if "BulkDataURI" in element:
        ET.SubElement(node, "BulkData", uri=str(element["BulkDataURI"]))
        return
    if "InlineBinary" in element:
        ET.SubElement(node, "InlineBinary").text = str(element["InlineBinary"])
        return
    for number, value in enumerate(element.get("Value") or [], start=1):
        if vr == "SQ":
            item = ET.SubElement(node, "Item", number=str(number))
            _attributes(item, value if isinstance(value, Mapping) else {})
        elif vr == "PN":
            _person_name(node, number, value)
        elif value is not None:
            ET.SubElement(node, "Value", number=str(number)).text = _text(value)


def _attributes(parent: ET.Element, dataset: Mapping[str, Any]) -> None:
    for tag in sorted(dataset):
        element = dataset[tag]
        if isinstance(element, Mapping):
            _attribute(parent, tag, element)


def dataset_to_xml(dataset: Mapping[str, Any]) -> bytes:
    """One ``NativeDicomModel`` document (UTF-8, with XML declaration)."""
    root = ET.Element("NativeDicomModel", xmlns=NAMESPACE)
    root.set("xml:space", "preserve")
    _attributes(root, dataset)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
