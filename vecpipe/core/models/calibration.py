"""Built-in calibration texts for int8 variants (written for vecpipe; no outside corpus).

Quantization uses them only to find which activation channels run far larger than the
rest (a property of the model's weights far more than of the text), so a few dozen
varied texts do: short sentences, questions, long technical paragraphs, lists, code and
numbers. Measured: 24, 48 and 250 general texts and 100 in-domain SciFact abstracts all
gave the same int8 quality (mean cosine to fp32 0.9962-0.9969 on SciFact and SICK-R).
`vecpipe models optimize --calibration FILE` takes a user's own texts instead.
"""
from __future__ import annotations

CALIBRATION_TEXTS = (
    "A man is playing a guitar on the porch.",
    "Two children are running through a field of tall grass.",
    "The woman is slicing an onion in the kitchen.",
    "A dog jumps to catch a red frisbee in the park.",
    "Nobody is riding the bicycle down the hill.",
    "What is the capital of Australia?",
    "How do I reset my password if I no longer have access to my email?",
    "Why does ice float on water?",
    "My card payment was declined at the supermarket, can you check why?",
    "I would like to cancel the transfer I made this morning.",
    "The meeting has been moved to Thursday at 3 pm in room 204.",
    "Please find attached the revised budget for the second quarter.",
    "ERROR: connection refused while contacting the database on port 5432",
    "grep -rn 'TODO' src/ | sort | uniq -c | sort -rn | head",
    "def mean(values): return sum(values) / len(values) if values else 0.0",
    "SELECT name, count(*) FROM orders GROUP BY name HAVING count(*) > 10;",
    "Temperature: 21.5 C, humidity 63%, wind 12 km/h from the north-west.",
    "1. Preheat the oven to 180 degrees. 2. Mix the flour and sugar. 3. Add two eggs and stir.",
    "The quick brown fox jumps over the lazy dog.",
    "Shares fell 3.2% on Monday after the company cut its annual revenue forecast.",
    "The committee approved the proposal by a vote of seven to two.",
    "She finally finished the marathon in just under four hours.",
    "Rain is expected across the region tomorrow, with heavy showers in the afternoon.",
    "The library opens at nine and closes at eight on weekdays.",
    "Mitochondria are the organelles that produce most of the cell's chemical energy.",
    "The trial enrolled 412 patients, randomly assigned to the drug or to a placebo.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "In 1969 two astronauts walked on the surface of the Moon.",
    "Regular exercise lowers blood pressure and improves sleep in older adults.",
    "Background: Chronic inflammation contributes to the progression of many diseases. "
    "Methods: We measured cytokine levels in blood samples from 1,204 adults followed for ten years, "
    "adjusting for age, sex, smoking status and body mass index. Results: Higher baseline levels of "
    "interleukin-6 were associated with a 1.8-fold increase in risk (95% CI 1.3-2.4, p < 0.001), while "
    "tumour necrosis factor alpha showed no significant association. Conclusions: Interleukin-6 may be a "
    "useful marker of long-term risk, although causality cannot be established from observational data.",
    "The new compiler pass rewrites nested loops so that memory is accessed sequentially, which improves "
    "cache behaviour. On the benchmark suite, median run time dropped by 14 percent, but two programs with "
    "irregular access patterns became slower, because the transformation added bounds checks that the "
    "original code did not need. We describe a heuristic that detects these cases and skips the rewrite.",
    "When the river flooded in the spring, the village moved its market to the old railway station. "
    "Farmers arrived before dawn with carts of vegetables, bread and cheese, and by midday the platform was "
    "so crowded that the stationmaster had to open the waiting rooms as well. Many people said afterwards "
    "that they preferred the station to the square, and the market never quite returned to its old place.",
    "Terms of service: by creating an account you agree that your data may be processed to provide the "
    "service, that you are responsible for keeping your password secret, and that either party may end the "
    "agreement at any time with thirty days' notice. Refunds are given only for unused subscription periods.",
    "To install the package, create a virtual environment, activate it, and run pip install with the name "
    "of the package. If the build fails with a missing compiler, install the development tools for your "
    "platform first, then try again. Use the --no-deps flag to skip optional dependencies.",
    "Das Wetter ist heute schön, und wir gehen am Nachmittag spazieren.",
    "Le train pour Lyon part à dix-huit heures du quai numéro trois.",
    "El museo está cerrado los lunes, pero abre temprano el resto de la semana.",
    "apple, banana, cherry, date, elderberry, fig, grape",
    "Q: Is the warranty valid outside the country of purchase? A: Yes, for two years with proof of purchase.",
    "#1 bestseller!!! Free shipping on all orders over $50 -- limited time only :)",
)
