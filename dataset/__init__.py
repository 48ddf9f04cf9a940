"""The sample knowledge base the project ships, and importers for xlsx and CSV files."""

from pathlib import Path

#: The bundled sample knowledge base, in the seed's ticket-export shape.
SAMPLE_KB = Path(__file__).with_name("sample_kb.xlsx")
