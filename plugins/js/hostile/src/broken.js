// Throws as soon as it is evaluated (at run time: only `js:import` loads it).

throw new Error("broken.js refuses to be imported");
