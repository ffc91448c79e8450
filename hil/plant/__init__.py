"""The physics behind every emulator: EV batteries, power stages, ports, the site feeder."""

from hil.plant.battery import Battery
from hil.plant.power_stage import PowerStage, Protection, Regulation
from hil.plant.site import EV, EnergyCounter, MeterReading, Plant, PlantRunner, Port, Site

__all__ = [
    "Battery", "EV", "EnergyCounter", "MeterReading", "Plant", "PlantRunner", "Port", "PowerStage",
    "Protection", "Regulation", "Site",
]
