# A small animated scene for the local network and its tests: a floor, a cube that turns, a
# sphere that rises, a sun and a camera; Cycles on the CPU at a small size, with a few samples
# and no denoiser (Debian's Blender has no OpenImageDenoise), so a frame renders in a second or
# two on a laptop core.
#
#   blender -b --factory-startup --python scripts/make-scene.py -- OUT.blend [WIDTH HEIGHT FRAMES]
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1:]
out = args[0]
width, height, frames = (int(a) for a in (args[1:4] + ["160", "90", "24"][len(args[1:4]):]))

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x = width
scene.render.resolution_y = height
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = frames

bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, -1))
bpy.ops.mesh.primitive_cube_add(size=1.6, location=(-1.2, 0, 0))
cube = bpy.context.object
cube.rotation_euler = (0.3, 0.2, 0.0)
cube.keyframe_insert(data_path="rotation_euler", frame=1)
cube.rotation_euler = (0.3, 0.2, 3.0)
cube.keyframe_insert(data_path="rotation_euler", frame=frames)
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(1.4, 0.5, -0.3))
sphere = bpy.context.object
sphere.keyframe_insert(data_path="location", frame=1)
sphere.location = (1.4, 0.5, 1.2)
sphere.keyframe_insert(data_path="location", frame=frames)

bpy.ops.object.light_add(type="SUN", location=(4, -4, 6))
bpy.context.object.data.energy = 4
bpy.ops.object.camera_add(location=(6, -6, 4.5), rotation=(1.1, 0, 0.785))
scene.camera = bpy.context.object
scene.world = bpy.data.worlds.new("World")
scene.world.color = (0.2, 0.25, 0.3)
bpy.ops.wm.save_as_mainfile(filepath=out)
