"""Small in-code tables the demo set is generated from (written by the project; no external data)."""

from __future__ import annotations

NAMES = ["Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kiri", "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara"]
ITEMS = ["apple", "marble", "sticker", "pencil", "book", "cookie", "stamp", "shell", "card",
         "balloon", "coin", "button"]

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid",
    "Portugal": "Lisbon", "Japan": "Tokyo", "Canada": "Ottawa", "Australia": "Canberra",
    "Brazil": "Brasilia", "Argentina": "Buenos Aires", "Egypt": "Cairo", "Kenya": "Nairobi",
    "India": "New Delhi", "China": "Beijing", "Mexico": "Mexico City", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens",
    "Turkey": "Ankara", "Peru": "Lima", "Chile": "Santiago", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Ireland": "Dublin", "Austria": "Vienna", "Hungary": "Budapest",
    "Morocco": "Rabat", "Nigeria": "Abuja", "South Korea": "Seoul", "New Zealand": "Wellington",
}
ELEMENTS = {
    "hydrogen": "H", "helium": "He", "carbon": "C", "nitrogen": "N", "oxygen": "O",
    "sodium": "Na", "magnesium": "Mg", "aluminium": "Al", "silicon": "Si", "sulfur": "S",
    "chlorine": "Cl", "potassium": "K", "calcium": "Ca", "iron": "Fe", "copper": "Cu",
    "zinc": "Zn", "silver": "Ag", "tin": "Sn", "gold": "Au", "mercury": "Hg", "lead": "Pb",
}

WORDS = ["garden", "window", "planet", "rocket", "silver", "orange", "pencil", "bridge",
         "castle", "dragon", "forest", "guitar", "island", "jungle", "kitten", "lemon",
         "meadow", "number", "ocean", "pepper", "rabbit", "summer", "ticket", "umbrella",
         "violin", "winter", "yellow", "zebra", "banana", "cactus", "dolphin", "engine",
         "feather", "harbor", "lantern", "mirror", "noodle", "puzzle", "river", "tomato"]

# (unit from, unit to, factor) for whole-number conversions
CONVERSIONS = [
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("kilograms", "grams", 1000), ("liters", "milliliters", 1000),
    ("feet", "inches", 12), ("days", "hours", 24), ("weeks", "days", 7), ("yards", "feet", 3),
    ("centimeters", "millimeters", 10), ("dozens", "items", 12),
]

# (function name, what it does, body) for the code family
CODE_TASKS = [
    ("is_even", "returns True if an integer is even and False otherwise",
     "def is_even(n):\n    return n % 2 == 0"),
    ("reverse_string", "returns a string reversed",
     "def reverse_string(s):\n    return s[::-1]"),
    ("list_max", "returns the largest number in a non-empty list",
     "def list_max(numbers):\n    largest = numbers[0]\n    for x in numbers[1:]:\n"
     "        if x > largest:\n            largest = x\n    return largest"),
    ("factorial", "computes the factorial of a non-negative integer",
     "def factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n"
     "    return result"),
    ("count_vowels", "counts the vowels in a string",
     "def count_vowels(text):\n    return sum(1 for c in text.lower() if c in \"aeiou\")"),
    ("is_palindrome", "checks whether a word reads the same forwards and backwards",
     "def is_palindrome(word):\n    word = word.lower()\n    return word == word[::-1]"),
    ("average", "returns the average of a non-empty list of numbers",
     "def average(numbers):\n    return sum(numbers) / len(numbers)"),
    ("fizzbuzz", "returns 'Fizz' for multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' "
     "for multiples of both, and the number as a string otherwise",
     "def fizzbuzz(n):\n    if n % 15 == 0:\n        return \"FizzBuzz\"\n    if n % 3 == 0:\n"
     "        return \"Fizz\"\n    if n % 5 == 0:\n        return \"Buzz\"\n    return str(n)"),
    ("unique_items", "returns the items of a list without duplicates, keeping their first order",
     "def unique_items(items):\n    seen = set()\n    result = []\n    for item in items:\n"
     "        if item not in seen:\n            seen.add(item)\n            result.append(item)\n"
     "    return result"),
    ("word_count", "counts the words in a sentence",
     "def word_count(sentence):\n    return len(sentence.split())"),
    ("celsius_to_fahrenheit", "converts a temperature from Celsius to Fahrenheit",
     "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32"),
    ("is_prime", "checks whether an integer is a prime number",
     "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
     "        if n % i == 0:\n            return False\n        i += 1\n    return True"),
]

DEFINITIONS = {
    "photosynthesis": "the process by which green plants use sunlight, water and carbon dioxide "
                      "to make sugar and release oxygen",
    "gravity": "the force that pulls objects with mass towards each other, such as a dropped "
               "ball towards the Earth",
    "evaporation": "the change of a liquid into a gas, as when water in a puddle dries up in "
                   "the sun",
    "a noun": "a word that names a person, place, thing or idea, such as 'teacher' or 'city'",
    "a verb": "a word that describes an action or a state, such as 'run' or 'be'",
    "a prime number": "a whole number greater than 1 whose only divisors are 1 and itself",
    "an ecosystem": "a community of living things together with the environment they live in",
    "inflation": "a general rise in prices over time, so that money buys less than before",
    "a democracy": "a system of government in which citizens choose their leaders by voting",
    "an atom": "the smallest unit of a chemical element that keeps the element's properties",
    "a habitat": "the natural home of an animal or plant, where it finds food and shelter",
    "erosion": "the slow wearing away of rock or soil by water, wind or ice",
    "a fraction": "a number that represents part of a whole, written as one number over another",
    "a synonym": "a word that means the same or nearly the same as another word",
    "an antonym": "a word with the opposite meaning of another word, such as 'hot' and 'cold'",
    "a budget": "a plan for how much money will be earned and spent over a period of time",
    "a metaphor": "a figure of speech that describes something by calling it something else",
    "an algorithm": "a finite list of precise steps that solves a problem or performs a task",
    "a mammal": "a warm-blooded animal with hair that feeds its young with milk",
    "condensation": "the change of a gas into a liquid, as when water drops form on a cold glass",
    "a variable": "a name in a program that refers to a value stored in memory",
    "friction": "the force that resists the movement of one surface sliding over another",
    "a volcano": "an opening in the Earth's crust through which molten rock, ash and gas escape",
    "a peninsula": "a piece of land almost surrounded by water but joined to the mainland",
}

# (informal sentence, formal rewrite)
FORMAL = [
    ("Hey, can you send me the report asap?", "Could you please send me the report as soon as possible?"),
    ("The meeting got moved to Friday.", "The meeting has been rescheduled to Friday."),
    ("We gotta fix this bug before the release.", "We must fix this defect before the release."),
    ("Thanks a ton for the help!", "Thank you very much for your assistance."),
    ("I can't make it to the party tonight.", "Unfortunately, I am unable to attend the party this evening."),
    ("The price is way too high.", "The price is considerably higher than expected."),
    ("Let me know what you think.", "I would appreciate your feedback."),
    ("Sorry, I forgot to call you back.", "I apologise for not returning your call."),
    ("The new app is super easy to use.", "The new application is very easy to use."),
    ("We ran out of paper again.", "Our supply of paper has been exhausted once more."),
    ("Can you check if the numbers add up?", "Could you please verify that the figures are correct?"),
    ("The train was late, so I missed the start.", "Owing to a delayed train, I missed the beginning."),
]
# (active sentence, passive rewrite)
PASSIVE = [
    ("The cat chased the mouse.", "The mouse was chased by the cat."),
    ("The chef cooked the soup.", "The soup was cooked by the chef."),
    ("Maria painted the fence.", "The fence was painted by Maria."),
    ("The wind broke the window.", "The window was broken by the wind."),
    ("The students planted a tree.", "A tree was planted by the students."),
    ("The dog found the ball.", "The ball was found by the dog."),
    ("The teacher graded the tests.", "The tests were graded by the teacher."),
    ("The company hired two engineers.", "Two engineers were hired by the company."),
    ("The children built a sandcastle.", "A sandcastle was built by the children."),
    ("The storm damaged the roof.", "The roof was damaged by the storm."),
]

# Rare topics, one sample each, far from every other family: the planted sparse samples.
RARE_TOPICS = [
    ("What does the falconry term 'mews' mean?",
     "In falconry, a mews is the building or enclosure where hawks are kept, especially while "
     "they moult their feathers."),
    ("How do tardigrades survive complete drying out?",
     "Tardigrades enter a state called cryptobiosis: they curl into a 'tun', replace much of their "
     "water with protective sugars and proteins, and almost stop their metabolism until water returns."),
    ("Explain how a point is scored in sepak takraw.",
     "In sepak takraw a point is scored when the rattan ball touches the floor on the opponents' "
     "side or when they fail to return it over the net using feet, knees, chest or head."),
    ("What is the purpose of a sextant's index mirror?",
     "The index mirror moves with the sextant's arm and reflects the sun or a star onto the horizon "
     "mirror, so the navigator can read the angle between the body and the horizon."),
    ("Describe the technique of overtone singing used in Tuvan khoomei.",
     "Khoomei singers hold a low fundamental note and shape the mouth and throat to amplify single "
     "overtones, so two or more pitches are heard at once."),
    ("What was the Antikythera mechanism used for?",
     "The Antikythera mechanism was an ancient Greek geared device used to predict the positions "
     "of the sun and moon, lunar phases and eclipses."),
    ("In bookbinding, what is a 'signature'?",
     "A signature is a group of pages printed on one large sheet that is folded and sewn together "
     "as a single unit of the book."),
    ("What does a dendrochronologist study?",
     "A dendrochronologist dates events and environmental changes by studying the growth rings "
     "of trees."),
    ("How does a hydraulic ram pump move water uphill without electricity?",
     "A hydraulic ram uses the momentum of flowing water: a valve slams shut, the pressure surge "
     "pushes part of the water through a second valve and up a delivery pipe."),
    ("What is 'kintsugi' in Japanese ceramics?",
     "Kintsugi is the practice of repairing broken pottery with lacquer mixed with powdered gold, "
     "treating the repair as part of the object's history."),
    ("Why do bagpipes need a drone reed?",
     "The drone reeds sound a constant note beneath the melody played on the chanter, giving the "
     "bagpipe its continuous harmonic background."),
    ("What is the role of a 'sommelier' in a restaurant?",
     "A sommelier is a trained wine professional who builds the wine list, stores the wines and "
     "advises guests on pairings with their food."),
    ("Explain what 'lichenometry' is used for.",
     "Lichenometry estimates the age of exposed rock surfaces, such as glacial moraines, from the "
     "size of the lichens growing on them."),
    ("What does a farrier do?",
     "A farrier trims and balances horses' hooves and fits horseshoes to them."),
    ("How is a 'tangram' puzzle played?",
     "A tangram has seven flat pieces cut from a square; the player arranges all seven, without "
     "overlap, to form a given silhouette."),
    ("What is 'petrichor'?",
     "Petrichor is the earthy smell released when rain falls on dry soil, caused by plant oils "
     "and a compound called geosmin."),
    ("What is the function of a ship's 'bilge keel'?",
     "Bilge keels are long fins along the hull's turn of the bilge that reduce a ship's rolling "
     "in waves."),
    ("Describe the 'cire perdue' casting method.",
     "In cire perdue (lost-wax) casting, a wax model is coated in clay, the wax is melted out, "
     "and molten metal is poured into the hollow mould it leaves."),
    ("What does an 'oologist' collect or study?",
     "An oologist studies birds' eggs, their shapes, colours and nests."),
    ("What is 'glossolalia' in linguistics?",
     "Glossolalia is fluent-sounding speech in no known language, often produced in religious "
     "settings; it has sounds but no vocabulary or grammar."),
    ("How does a 'camera obscura' form an image?",
     "Light from a scene passes through a small hole into a dark room or box and projects an "
     "inverted image of the scene on the opposite wall."),
    ("What is the 'Coriolis effect' in weather?",
     "The Coriolis effect is the apparent deflection of moving air caused by Earth's rotation: to "
     "the right in the northern hemisphere and to the left in the southern."),
    ("What is a 'quipu'?",
     "A quipu is a device of knotted cords the Inca used to record numbers and other information."),
    ("Explain the rules of the game 'Go' in one paragraph.",
     "Two players alternately place black and white stones on a grid; stones with no empty "
     "adjacent point are captured, and the player who surrounds more territory wins."),
]
